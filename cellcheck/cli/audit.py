"""`cellcheck audit`, `cellcheck stats` and `cellcheck checks`: the data, its statistics, the check ids."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import click

from cellcheck.cli.options import (CLASSES_HELP, FORMAT_HELP, FORMATS, audit_options, check_ids, default_format, emit,
                                   roi, size)
from cellcheck.errors import CellcheckError
from cellcheck.findings import CHECKS
from cellcheck.report import RENDERERS


@click.command("audit", short_help="Audit a datalist or a folder of CellMap zarr stores.")
@click.argument("path", type=click.Path(path_type=Path, readable=False))
@click.option("--dataroot", type=click.Path(path_type=Path), help="Folder datalist paths are relative to (default: the datalist's folder).")
@click.option("--datastats", type=click.Path(path_type=Path), help="Auto3DSeg datastats file to compare (default: datastats.yaml beside the datalist).")
@click.option("--format", "fmt", type=FORMATS, default=None, help=FORMAT_HELP)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write the report to FILE (atomically) instead of stdout.")
@click.option("--select", callback=check_ids, help="Only these check ids (comma-separated).")
@click.option("--ignore", callback=check_ids, help="Skip these check ids (comma-separated).")
@click.option("--strict", is_flag=True, help="Warnings fail the audit too.")
@click.option("--case-budget", callback=size, default=None, help="Host memory one loaded sample may take (default 8G).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None, help="Worker processes (default: all cores).")
@click.option("--memory-budget", callback=size, default=None, help="Voxel data in flight per worker (default 16M).")
@click.option("--resolution", help="Voxel size you train at, nm: 8, or z,y,x such as 5.24,4,4 (CellMap stores).")
@click.option("--classes", "classes", type=click.Path(path_type=Path), help=CLASSES_HELP)
@click.option("--source", type=click.Path(path_type=Path, readable=False),
              help="Datalist only: the CellMap stores it was converted from; every entry is checked against its crop.")
@click.option("--roi", callback=roi, help="Patch size Z,Y,X the trainer draws: adds the coverage plan per class "
              "(fold 0 of a datalist; the stores' split at --resolution).")
@click.option("--patches", type=click.IntRange(min=1), default=None,
              help="With --roi: patches per crop and epoch (the config's num_patches_per_image; default 1).")
def audit_command(path, dataroot, datastats, fmt, output, select, ignore, strict, case_budget, jobs, memory_budget,
          resolution, classes, source, roi, patches) -> None:
    """Audit a MONAI datalist JSON or a folder of CellMap OME-NGFF zarr stores.

    Exit status: 0 no errors (and no warnings, with --strict), 1 findings, 2 the audit could not run
    (one line naming the file and the fix).
    """
    from cellcheck.audit import audit as run_audit
    from cellcheck.checks.coverage import Sampling
    from cellcheck.config import KEYS

    coverage = None
    if roi is not None:
        coverage = Sampling(tuple(roi), patches or 1, KEYS["foreground_ratio"].default)
    report = run_audit(
        path, dataroot=dataroot, datastats=datastats, select=select, ignore=ignore, strict=strict,
        options=replace(audit_options(case_budget, jobs, memory_budget, resolution, classes), source=source),
        coverage=coverage,
    )
    emit(RENDERERS[fmt or default_format()](report), output)
    sys.exit(report.exit_code)


@click.command("stats", short_help="Per-label statistics by label value, and image statistics.")
@click.argument("path", type=click.Path(path_type=Path, readable=False))
@click.option("--dataroot", type=click.Path(path_type=Path), help="Folder datalist paths are relative to.")
@click.option("--datalist", type=click.Path(path_type=Path),
              help="For DataAnalyzer output: the datalist with annotated_classes (default: datalist.json beside it).")
@click.option("--format", "fmt", type=FORMATS, default=None, help=FORMAT_HELP)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write the table to FILE (atomically) instead of stdout.")
@click.option("--datastats-out", type=click.Path(path_type=Path),
              help="Also write the corrected statistics as an Auto3DSeg-style datastats.yaml.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None, help="Worker processes (default: all cores).")
@click.option("--memory-budget", callback=size, default=None, help="Voxel data in flight per worker (default 16M).")
@click.option("--resolution", help="CellMap stores: count voxels at this training resolution (nm), e.g. 8.")
@click.option("--classes", "classes", type=click.Path(path_type=Path), help=CLASSES_HELP)
@click.option("--allow-partial", is_flag=True,
              help="Exit 0 even when cases are left out of the statistics (they are still counted and named).")
def stats_command(path, dataroot, datalist, fmt, output, datastats_out, jobs, memory_budget, resolution, classes,
                  allow_partial) -> None:
    """Per-label statistics grouped by label value, and image statistics.

    PATH is a datalist, a folder of CellMap stores, an audit report (`cellcheck audit --format json`:
    its statistics, without reading a voxel again), or DataAnalyzer's datastats_by_case.yaml (read
    without touching a voxel: DataAnalyzer's own summary grouped labels by position, not value).
    A case that cannot be used (unreadable, missing, or a crop that cannot train at --resolution) is
    left out of the statistics, counted and named.

    Exit status: 0 statistics over every case, 1 cases left out (unless --allow-partial) or none usable,
    2 a usage error.
    """
    from cellcheck.audit import run_audit
    from cellcheck.dataanalyzer import datastats, is_by_case_file, read_by_case, write_datastats
    from cellcheck.report import audit_report_stats, render_stats
    from cellcheck.stats import summarize

    saved = audit_report_stats(path)
    if saved is not None:
        if datastats_out is not None:
            raise CellcheckError(f"{path}: an audit report holds the summary, not the per-case statistics "
                                 "--datastats-out writes; run cellcheck stats on the datalist for it")
        emit(render_stats(saved, fmt or default_format(), str(path)), output)
        sys.exit(partial_status(saved["images"], allow_partial))
    options = audit_options(None, jobs, memory_budget, resolution, classes)
    if is_by_case_file(path):
        cases = read_by_case(path, datalist, options.classes)
        stats = summarize(cases, options.classes)
    else:
        run = run_audit(path, dataroot=dataroot, options=options)
        stats = run.summary(options.classes)
        cases = [c for c in run.case_stats if c.case not in stats["images"].get("left_out", {})]
    emit(render_stats(stats, fmt or default_format(), str(path)), output)
    if datastats_out is not None:
        try:
            write_datastats(datastats_out, datastats(cases, options.classes))
        except OSError as exc:
            raise CellcheckError(f"{datastats_out}: cannot write ({exc.strerror or exc}); choose another path")
    sys.exit(partial_status(stats["images"], allow_partial))


def partial_status(images: dict, allow_partial: bool) -> int:
    """1 when the statistics leave cases out (unless the user allowed it) or hold none at all, else 0; says why."""
    left = images.get("left_out") or {}
    if not left:
        return 0
    used = images["cases"] - len(left)
    if used == 0:
        click.echo(f"cellcheck stats: none of the {images['cases']} cases could be used (named above); "
                   "no statistics", err=True)
        return 1
    if allow_partial:
        return 0
    click.echo(f"cellcheck stats: {len(left)} of {images['cases']} cases left out of these statistics (named above); "
               "fix them, or pass --allow-partial to accept statistics without them", err=True)
    return 1


@click.command("checks", short_help="List every check id, its severity and its incident.")
def checks_command() -> None:
    """List every check id with its severity and the field incident it traces to (docs/INCIDENTS.md).

    Exit status: 0.
    """
    width = max(map(len, CHECKS))
    for c in CHECKS.values():
        click.echo(f"{c.id:<{width}}  {c.severity.value:<7}  {c.catches}  (incident {c.incident})")
