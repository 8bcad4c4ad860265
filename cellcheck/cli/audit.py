"""`cellcheck audit`, `cellcheck stats` and `cellcheck checks`: the data, its statistics, the check ids."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import click

from cellcheck.cli.options import CLASSES_HELP, FORMATS, audit_options, check_ids, default_format, emit, size
from cellcheck.errors import CellcheckError
from cellcheck.findings import CHECKS
from cellcheck.report import RENDERERS


@click.command("audit")
@click.argument("path", type=click.Path(path_type=Path, readable=False))
@click.option("--dataroot", type=click.Path(path_type=Path), help="Folder datalist paths are relative to (default: the datalist's folder).")
@click.option("--datastats", type=click.Path(path_type=Path), help="Auto3DSeg datastats file to compare (default: datastats.yaml beside the datalist).")
@click.option("--format", "fmt", type=FORMATS, default=None, help="Report format (default: text on a terminal, json otherwise).")
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
def audit_command(path, dataroot, datastats, fmt, output, select, ignore, strict, case_budget, jobs, memory_budget,
          resolution, classes, source) -> None:
    """Audit a MONAI datalist JSON or a folder of CellMap OME-NGFF zarr stores."""
    from cellcheck.audit import audit as run_audit

    report = run_audit(
        path, dataroot=dataroot, datastats=datastats, select=select, ignore=ignore, strict=strict,
        options=replace(audit_options(case_budget, jobs, memory_budget, resolution, classes), source=source),
    )
    emit(RENDERERS[fmt or default_format()](report), output)
    sys.exit(report.exit_code)


@click.command("stats")
@click.argument("path", type=click.Path(path_type=Path, readable=False))
@click.option("--dataroot", type=click.Path(path_type=Path), help="Folder datalist paths are relative to.")
@click.option("--datalist", type=click.Path(path_type=Path),
              help="For DataAnalyzer output: the datalist with annotated_classes (default: datalist.json beside it).")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True, help="Output format.")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write the table to FILE (atomically).")
@click.option("--datastats-out", type=click.Path(path_type=Path),
              help="Also write the corrected statistics as an Auto3DSeg-style datastats.yaml.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None, help="Worker processes (default: all cores).")
@click.option("--memory-budget", callback=size, default=None, help="Voxel data in flight per worker (default 16M).")
@click.option("--resolution", help="CellMap stores: count voxels at this training resolution (nm), e.g. 8.")
@click.option("--classes", "classes", type=click.Path(path_type=Path), help=CLASSES_HELP)
def stats_command(path, dataroot, datalist, fmt, output, datastats_out, jobs, memory_budget, resolution, classes) -> None:
    """Per-label statistics grouped by label value, and image statistics.

    PATH is a datalist, a folder of CellMap stores, an audit report (`cellcheck audit --format json`:
    its statistics, without reading a voxel again), or DataAnalyzer's datastats_by_case.yaml (read
    without touching a voxel: DataAnalyzer's own summary grouped labels by position, not value).
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
        emit(render_stats(saved, fmt, str(path)), output)
        return
    options = audit_options(None, jobs, memory_budget, resolution, classes)
    n_cases = None
    if is_by_case_file(path):
        cases = read_by_case(path, datalist, options.classes)
    else:
        run = run_audit(path, dataroot=dataroot, options=options)
        cases, n_cases = run.case_stats, run.cases
    emit(render_stats(summarize(cases, options.classes, n_cases), fmt, str(path)), output)
    if datastats_out is not None:
        try:
            write_datastats(datastats_out, datastats(cases, options.classes))
        except OSError as exc:
            raise CellcheckError(f"{datastats_out}: cannot write ({exc.strerror or exc}); choose another path")


@click.command("checks")
def checks_command() -> None:
    """List every check id with its severity and the field incident it traces to (docs/INCIDENTS.md)."""
    width = max(map(len, CHECKS))
    for c in CHECKS.values():
        click.echo(f"{c.id:<{width}}  {c.severity.value:<7}  {c.catches}  (incident {c.incident})")
