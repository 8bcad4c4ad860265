"""What several commands share: option callbacks, the default output format, writing a report, audit options.

Commands parse here, call the library, and print; nothing below `cellcheck.cli` prints on its own.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cellcheck.errors import CellcheckError
from cellcheck.files import write_atomic
from cellcheck.report import RENDERERS, parse_check_ids
from cellcheck.cli.deprecated import warn
from cellcheck.units import has_unit, parse_bytes, parse_size

FORMATS = click.Choice(sorted(RENDERERS))
#: Every command with a report or summary picks its format by this one rule (`default_format`).
FORMAT_HELP = "Report format (default: text on a terminal, json otherwise)."
CLASSES_HELP = ("Training classes, one name per line (CSV) or a YAML list, in channel order "
                "(default: the 14 classes ecs..nuc).")


def check_ids(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str]:
    try:
        return parse_check_ids(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """A size with its unit (16M, 8G) in bytes; a bare number is still read as bytes, with a warning, this release."""
    if value is None:
        return None
    try:
        size = parse_bytes(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if size <= 0:
        raise click.BadParameter(f"{value!r} is no memory at all; give a positive size such as 16M or 8G")
    if not has_unit(value):
        warn(ctx, f"{param.opts[0]} {value} (bytes, no unit)", f"{param.opts[0]} {value}B, or 16M, 8G")
    return size


def slurm_mem(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A job's host memory as SLURM's --mem takes it ('512G'), checked: without a unit it is refused."""
    if value is None:
        return None
    try:
        if parse_size(value) <= 0:
            raise ValueError(f"{value!r} is no memory at all")
    except ValueError as exc:
        why = "" if has_unit(value) else " (SLURM would read it as MB)"
        raise click.BadParameter(f"{exc}{why}") from None
    return value.strip()


def gpu_mem(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """GPU memory in MiB from a size with its unit ('46068M', '45G'); a bare number is MiB, with a warning."""
    if value is None:
        return None
    try:
        mib = (parse_bytes(value) / 2**20) if has_unit(value) else float(value)
    except ValueError as exc:
        raise click.BadParameter(f"{exc}; write it as 46068M or 45G") from None
    if mib <= 0:
        raise click.BadParameter(f"{value!r} is no memory at all; give a size such as 46068M or 45G")
    if not has_unit(value):
        warn(ctx, f"{param.opts[0]} {value} (MiB, no unit)", f"{param.opts[0]} {value}M")
    return mib


def default_format() -> str:
    """The one default of every command's --format: text for a person at a terminal, JSON for a pipe or a file."""
    return "text" if sys.stdout.isatty() else "json"


def emit(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=False)
    else:
        try:
            write_atomic(output, text)
        except OSError as exc:
            raise CellcheckError(f"{output}: cannot write the report ({exc.strerror or exc}); choose another --output")


def audit_options(case_budget: int | None, jobs: int | None, memory_budget: int | None, resolution: str | None = None,
             classes: Path | None = None):
    from cellcheck.audit.options import AuditOptions, default_jobs
    from cellcheck.classes import load_class_map
    from cellcheck.grid import parse_resolution

    base = AuditOptions()
    return AuditOptions(
        case_budget=case_budget or base.case_budget,
        block_bytes=memory_budget or base.block_bytes,
        jobs=jobs or default_jobs(),
        progress=sys.stderr.isatty(),
        resolution=parse_resolution(resolution),
        classes=load_class_map(classes),
    )


def roi(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        roi = [int(v) for v in value.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not three sizes such as 96,96,96") from None
    if len(roi) != 3 or min(roi) < 1:
        raise click.BadParameter(f"{value!r} is not three positive sizes such as 96,96,96")
    return roi
