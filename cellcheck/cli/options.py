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
from cellcheck.units import parse_bytes

FORMATS = click.Choice(sorted(RENDERERS))
CLASSES_HELP = ("Training classes, one name per line (CSV) or a YAML list, in channel order "
                "(default: the 14 classes ecs..nuc).")


def check_ids(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str]:
    try:
        return parse_check_ids(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    try:
        size = None if value is None else parse_bytes(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if size is not None and size <= 0:
        raise click.BadParameter(f"{value!r} is no memory at all; give a positive size such as 16M or 8G")
    return size


def default_format() -> str:
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
