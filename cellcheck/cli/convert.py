"""`cellcheck convert`: CellMap crops to NIfTI image/label pairs at one resolution, with a MONAI datalist."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cellcheck.cli.deprecated import Command
from cellcheck.cli.options import CLASSES_HELP, FORMAT_HELP, audit_options, default_format, size


@click.command("convert", cls=Command, renamed={"--out": "--output-dir"},
               short_help="Convert CellMap crops to NIfTI pairs and a datalist.")
@click.argument("stores", type=click.Path(path_type=Path, readable=False))
@click.option("--resolution", required=True, help="Voxel size to train at, nm: 8, or z,y,x such as 5.24,4,4.")
@click.option("--output-dir", "out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder for imagesTr/, labelsTr/, provenance/ and datalist.json (created if missing).")
@click.option("--classes", "classes", type=click.Path(path_type=Path), help=CLASSES_HELP)
@click.option("--folds", type=click.IntRange(min=1), default=None,
              help="Cross-validation folds (default: up to 5, as many as the rarest class allows).")
@click.option("--upsample-labels", is_flag=True, help="Convert crops annotated coarser than --resolution by nearest upsampling.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None, help="Worker processes (default: all cores).")
@click.option("--memory-budget", callback=size, default=None, help="Voxel data in flight per worker (default 256M).")
@click.option("--case-budget", callback=size, default=None,
              help="Refuse crops whose loaded sample would exceed this (default 8G, the audit's oversized-case).")
@click.option("--overwrite", is_flag=True, help="Replace files in --output-dir that this tool did not write.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default=None, help=FORMAT_HELP)
@click.option("--strict", is_flag=True, help="Exit 1 when any crop is refused.")
def convert_command(stores, resolution, out, classes, folds, upsample_labels, jobs, memory_budget, case_budget, overwrite, fmt,
            strict) -> None:
    """Convert CellMap crops to NIfTI image/label pairs at one resolution, with a MONAI datalist.

    Crop and raw levels pair by voxel size; crops that cannot convert are refused with the reason.
    Re-running skips crops whose sources and settings have not changed; a file in the way that this
    tool did not write stops it before anything is written (unless --overwrite); other files are left alone.

    Exit status: 0 the datalist was written, 1 no crop converted (or --strict and some were refused),
    2 a usage error.
    """
    from cellcheck.convert import DEFAULT_CONVERT_BYTES, Options, convert as run_convert
    from cellcheck.convert.summary import render_summary

    base = audit_options(case_budget, jobs, None, resolution, classes)
    opts = Options(resolution=base.resolution, classes=base.classes, upsample=upsample_labels,
                   case_budget=base.case_budget)
    result = run_convert(stores, out, opts, folds=folds, jobs=base.jobs, progress=base.progress,
                         max_bytes=memory_budget or DEFAULT_CONVERT_BYTES, overwrite=overwrite)
    click.echo(render_summary(result, fmt or default_format()), nl=False)
    sys.exit(result.exit_code(strict))
