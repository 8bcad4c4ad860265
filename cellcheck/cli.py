"""The `cellcheck` command: a thin click layer over the library; it parses, calls, prints.

User mistakes end as one line on stderr and exit 2; findings exit 1; a clean audit exits 0.
Nothing here swallows an error into a silent exit 0 (docs/INCIDENTS.md, incident 11).
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import click

from cellcheck import __version__
from cellcheck.errors import CellcheckError, exit_status
from cellcheck.findings import CHECKS
from cellcheck.report import RENDERERS, parse_check_ids, write_atomic
from cellcheck.units import parse_bytes

FORMATS = click.Choice(sorted(RENDERERS))
CLASSES_HELP = ("Training classes, one name per line (CSV) or a YAML list, in channel order "
                "(default: the 14 classes ecs..nuc).")


def _check_ids(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str]:
    try:
        return parse_check_ids(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    try:
        size = None if value is None else parse_bytes(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if size is not None and size <= 0:
        raise click.BadParameter(f"{value!r} is no memory at all; give a positive size such as 16M or 8G")
    return size


def _default_format() -> str:
    return "text" if sys.stdout.isatty() else "json"


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=False)
    else:
        try:
            write_atomic(output, text)
        except OSError as exc:
            raise CellcheckError(f"{output}: cannot write the report ({exc.strerror or exc}); choose another --output")


_PASSTHROUGH = (click.exceptions.Exit, click.exceptions.Abort, KeyboardInterrupt, BrokenPipeError)


class _Cli(click.Group):
    """Errors become one line and exit 2 (never exit 0); torch-backed commands load only when called."""

    #: name -> ("module:attribute", help line) of commands whose modules import torch
    lazy = {
        "train": ("trainer.cli:train_command", "Train SegResNet, SwinUNETR or DiNTS with the masked loss, after the gate passes."),
        "infer": ("trainer.infer:infer_command", "Per-class probability maps from one or more checkpoints (ensemble)."),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module, attr = self.lazy[name][0].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list without importing torch for the lazy ones."""
        rows = [(name, self.commands[name].get_short_help_str(60)) for name in sorted(self.commands)]
        rows += [(name, help_line) for name, (_, help_line) in self.lazy.items()]
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows))

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except _PASSTHROUGH:
            raise
        except Exception as exc:  # user mistakes, usage errors and bugs alike: cellcheck.errors.exit_status
            ctx.exit(exit_status(exc))


def run_command(command: click.Command) -> None:
    """Run one command on its own (`python -m trainer`) with the same error handling as `cellcheck`."""
    try:
        command.main(prog_name=command.name, standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        sys.exit(130)
    except Exception as exc:
        sys.exit(exit_status(exc))


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cellcheck")
def cli() -> None:
    """Catch what would kill a 3D segmentation job before it is submitted."""


@cli.command()
@click.argument("path", type=click.Path(path_type=Path, readable=False))
@click.option("--dataroot", type=click.Path(path_type=Path), help="Folder datalist paths are relative to (default: the datalist's folder).")
@click.option("--datastats", type=click.Path(path_type=Path), help="Auto3DSeg datastats file to compare (default: datastats.yaml beside the datalist).")
@click.option("--format", "fmt", type=FORMATS, default=None, help="Report format (default: text on a terminal, json otherwise).")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write the report to FILE (atomically) instead of stdout.")
@click.option("--select", callback=_check_ids, help="Only these check ids (comma-separated).")
@click.option("--ignore", callback=_check_ids, help="Skip these check ids (comma-separated).")
@click.option("--strict", is_flag=True, help="Warnings fail the audit too.")
@click.option("--case-budget", callback=_size, default=None, help="Host memory one loaded sample may take (default 8G).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None, help="Worker processes (default: all cores).")
@click.option("--memory-budget", callback=_size, default=None, help="Voxel data in flight per worker (default 16M).")
@click.option("--resolution", help="Voxel size you train at, nm: 8, or z,y,x such as 5.24,4,4 (CellMap stores).")
@click.option("--classes", "classes", type=click.Path(path_type=Path), help=CLASSES_HELP)
@click.option("--source", type=click.Path(path_type=Path, readable=False),
              help="Datalist only: the CellMap stores it was converted from; every entry is checked against its crop.")
def audit(path, dataroot, datastats, fmt, output, select, ignore, strict, case_budget, jobs, memory_budget,
          resolution, classes, source) -> None:
    """Audit a MONAI datalist JSON or a folder of CellMap OME-NGFF zarr stores."""
    from dataclasses import replace

    from cellcheck.audit import audit as run_audit

    report = run_audit(
        path, dataroot=dataroot, datastats=datastats, select=select, ignore=ignore, strict=strict,
        options=replace(_options(case_budget, jobs, memory_budget, resolution, classes), source=source),
    )
    _emit(RENDERERS[fmt or _default_format()](report), output)
    sys.exit(report.exit_code)


@cli.command()
@click.argument("path", type=click.Path(path_type=Path, readable=False))
@click.option("--dataroot", type=click.Path(path_type=Path), help="Folder datalist paths are relative to.")
@click.option("--datalist", type=click.Path(path_type=Path),
              help="For DataAnalyzer output: the datalist with annotated_classes (default: datalist.json beside it).")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True, help="Output format.")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write the table to FILE (atomically).")
@click.option("--datastats-out", type=click.Path(path_type=Path),
              help="Also write the corrected statistics as an Auto3DSeg-style datastats.yaml.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None, help="Worker processes (default: all cores).")
@click.option("--memory-budget", callback=_size, default=None, help="Voxel data in flight per worker (default 16M).")
@click.option("--resolution", help="CellMap stores: count voxels at this training resolution (nm), e.g. 8.")
@click.option("--classes", "classes", type=click.Path(path_type=Path), help=CLASSES_HELP)
def stats(path, dataroot, datalist, fmt, output, datastats_out, jobs, memory_budget, resolution, classes) -> None:
    """Per-label statistics grouped by label value, and image statistics.

    PATH is a datalist, a folder of CellMap stores, or DataAnalyzer's datastats_by_case.yaml (read
    without touching a voxel: DataAnalyzer's own summary grouped labels by position, not value).
    """
    from cellcheck.audit import run_audit
    from cellcheck.datastats import datastats, is_by_case_file, read_by_case, write_datastats
    from cellcheck.report import render_stats
    from cellcheck.stats import summarize

    options = _options(None, jobs, memory_budget, resolution, classes)
    n_cases = None
    if is_by_case_file(path):
        cases = read_by_case(path, datalist, options.classes)
    else:
        run = run_audit(path, dataroot=dataroot, options=options)
        cases, n_cases = run.case_stats, run.cases
    _emit(render_stats(summarize(cases, options.classes, n_cases), fmt, str(path)), output)
    if datastats_out is not None:
        try:
            write_datastats(datastats_out, datastats(cases, options.classes))
        except OSError as exc:
            raise CellcheckError(f"{datastats_out}: cannot write ({exc.strerror or exc}); choose another path")


@cli.command()
@click.argument("path", type=click.Path(path_type=Path, readable=False), required=False)
@click.option("--config", "-c", type=click.Path(path_type=Path, readable=False), help="Training config (YAML) to check and plan from.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key (repeatable).")
@click.option("--model", type=click.Choice(["segresnet", "swinunetr", "dints"]), help="Network (default: the config's).")
@click.option("--gpu", help="Target GPU profile, e.g. l40s, a100-80gb (default: the config's, else l40s).")
@click.option("--gpus", type=click.IntRange(min=1), help="GPUs (DDP ranks) per job.")
@click.option("--mem", help="Host memory of the job as SLURM's --mem, e.g. 512G.")
@click.option("--workers", type=click.IntRange(min=0), help="DataLoader workers per rank.")
@click.option("--prefetch", type=click.IntRange(min=1), help="DataLoader prefetch factor.")
@click.option("--format", "fmt", type=FORMATS, default=None, help="Report format (default: text on a terminal, json otherwise).")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write the report to FILE (atomically).")
@click.option("--select", callback=_check_ids, help="Only these check ids (comma-separated).")
@click.option("--ignore", callback=_check_ids, help="Skip these check ids (comma-separated).")
@click.option("--no-strict", is_flag=True, help="Let warnings pass (the gate is strict by default).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None, help="Worker processes (default: all cores).")
def gate(path, config, overrides, model, gpu, gpus, mem, workers, prefetch, fmt, output, select, ignore, no_strict, jobs) -> None:
    """Audit + config + environment + memory plan: exit 0 only if a job may start."""
    from cellcheck.config import parse_overrides
    from cellcheck.gate import run_gate

    report = run_gate(
        path, config=config, overrides=parse_overrides(list(overrides)),
        plan={"model": model, "gpu": gpu, "gpus": gpus, "mem": mem, "workers": workers, "prefetch": prefetch},
        options=_options(None, jobs, None), select=select, ignore=ignore, strict=not no_strict,
    )
    _emit(RENDERERS[fmt or _default_format()](report), output)
    sys.exit(report.exit_code)


@cli.command()
@click.argument("stores", type=click.Path(path_type=Path, readable=False))
@click.option("--resolution", required=True, help="Voxel size to train at, nm: 8, or z,y,x such as 5.24,4,4.")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Folder for imagesTr/, labelsTr/ and datalist.json.")
@click.option("--classes", "classes", type=click.Path(path_type=Path), help=CLASSES_HELP)
@click.option("--folds", type=click.IntRange(min=1), default=None,
              help="Cross-validation folds (default: up to 5, as many as the rarest class allows).")
@click.option("--upsample-labels", is_flag=True, help="Convert crops annotated coarser than --resolution by nearest upsampling.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None, help="Worker processes (default: all cores).")
@click.option("--memory-budget", callback=_size, default=None, help="Voxel data in flight per worker (default 256M).")
@click.option("--case-budget", callback=_size, default=None,
              help="Refuse crops whose loaded sample would exceed this (default 8G, the audit's oversized-case).")
@click.option("--overwrite", is_flag=True, help="Replace files in --out that this tool did not write.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default=None,
              help="Summary format (default: text on a terminal, json otherwise).")
@click.option("--strict", is_flag=True, help="Exit 1 when any crop is refused.")
def convert(stores, resolution, out, classes, folds, upsample_labels, jobs, memory_budget, case_budget, overwrite, fmt,
            strict) -> None:
    """Convert CellMap crops to NIfTI image/label pairs at one resolution, with a MONAI datalist.

    Crop and raw levels pair by voxel size; crops that cannot convert are refused with the reason.
    Re-running skips crops whose sources and settings have not changed. Exit 0 when the datalist was
    written, 1 when no crop converted (or --strict and some were refused), 2 on a usage error.
    """
    from cellcheck.convert import DEFAULT_CONVERT_BYTES, Options, convert as run_convert
    from cellcheck.convert.summary import render_summary

    base = _options(case_budget, jobs, None, resolution, classes)
    opts = Options(resolution=base.resolution, classes=base.classes, upsample=upsample_labels,
                   case_budget=base.case_budget)
    result = run_convert(stores, out, opts, folds=folds, jobs=base.jobs, progress=base.progress,
                         max_bytes=memory_budget or DEFAULT_CONVERT_BYTES, overwrite=overwrite)
    click.echo(render_summary(result, fmt or _default_format()), nl=False)
    sys.exit(result.exit_code(strict))


def _options(case_budget: int | None, jobs: int | None, memory_budget: int | None, resolution: str | None = None,
             classes: Path | None = None):
    from cellcheck.audit.options import AuditOptions, default_jobs
    from cellcheck.classes import load_class_map
    from cellcheck.pairing import parse_resolution

    base = AuditOptions()
    return AuditOptions(
        case_budget=case_budget or base.case_budget,
        block_bytes=memory_budget or base.block_bytes,
        jobs=jobs or default_jobs(),
        progress=sys.stderr.isatty(),
        resolution=parse_resolution(resolution),
        classes=load_class_map(classes),
    )


@cli.command("checks")
def list_checks() -> None:
    """List every check id with its severity and the field incident it traces to (docs/INCIDENTS.md)."""
    width = max(map(len, CHECKS))
    for c in CHECKS.values():
        click.echo(f"{c.id:<{width}}  {c.severity.value:<7}  {c.catches}  (incident {c.incident})")


def _register_commands() -> None:
    """Commands defined beside their library modules (none of them imports torch)."""
    from cellcheck.memory.cli import predict_command, profile_command
    from cellcheck.submit import submit_command

    cli.add_command(predict_command)
    cli.add_command(profile_command)
    cli.add_command(submit_command)


_register_commands()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        cli.main(args=argv, prog_name="cellcheck")
    except BrokenPipeError:  # `cellcheck checks | head`: the reader left; Python's documented way out
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)


if __name__ == "__main__":
    main()
