"""`cellcheck train` and `cellcheck infer`: the gated trainer, and probability maps from its checkpoints.

torch is imported only when a command runs, so `cellcheck audit` never pays for it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cellcheck.cli.deprecated import Command
from cellcheck.cli.options import slurm_mem

def _box(ctx: click.Context, param: click.Parameter, value: str | None):
    """Z0,Y0,X0,Z1,Y1,X1 (nm) -> ((z0, y0, x0), (z1, y1, x1))."""
    if value is None:
        return None
    try:
        v = [float(x) for x in value.split(",")]
    except ValueError:
        v = []
    if len(v) != 6 or any(b <= a for a, b in zip(v[:3], v[3:])):
        raise click.BadParameter(f"{value!r} is not a box Z0,Y0,X0,Z1,Y1,X1 in nm with each end past its start")
    return tuple(v[:3]), tuple(v[3:])


@click.command("train", short_help="Train a network with the masked loss once the gate passes.")
@click.option("--config", "-c", "config", type=click.Path(path_type=Path, readable=False), required=True,
              help="Training config (YAML).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key (repeatable).")
@click.option("--resume", is_flag=True,
              help="Continue the run in OUTPUT_DIR from its last.pt, exactly where it stopped. Without it, an "
                   "OUTPUT_DIR that already holds a run is refused (exit 1) and left as it is.")
@click.option("--mem", callback=slurm_mem,
              help="Host memory of the job, with its unit: 512G (default: SLURM_MEM_PER_NODE, else the config's).")
def train_command(config: Path, overrides: tuple[str, ...], resume: bool, mem: str | None) -> None:
    """Train SegResNet, SwinUNETR or DiNTS with the masked loss, after the gate passes.

    Exit status: 0 done (or stopped on SIGTERM/SIGUSR1 with a checkpoint), 1 refused (the gate, or a run
    already in OUTPUT_DIR without --resume), 2 a usage error, 3 stopped on repeated non-finite losses,
    130 stopped by Ctrl-C (SIGINT) with a checkpoint: continue with --resume.
    """
    from cellcheck.config import parse_overrides
    from trainer.train import train

    sys.exit(train(config, parse_overrides(list(overrides)), resume=resume, mem=mem))


@click.command("infer", cls=Command, renamed={"--output": "--output-dir", "--format": "--file-format"},
               short_help="Write per-class probability maps from checkpoints.")
@click.option("--checkpoint", "checkpoints", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Trainer checkpoint (.pt); repeat to ensemble (probabilities are averaged).")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--output-dir", "output_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder for the probability maps (created if missing).")
@click.option("--file-format", "fmt", type=click.Choice(["nifti", "zarr"]), default="nifti", show_default=True,
              help="nifti: 4D float32, class last, the input's affine, class names in a header extension; zarr: a "
                   "format-2 array (C, Z, Y, X) float32 that zarr 2 and 3 read, class names in its attributes.")
@click.option("--crop", help="IMAGES is one CellMap store: infer this crop of it (an OME-NGFF group out).")
@click.option("--box", callback=_box, help="IMAGES is one CellMap store: infer this box, Z0,Y0,X0,Z1,Y1,X1 in nm.")
@click.option("--resolution", help="With --crop/--box: the voxel size in nm (default: the checkpoint's training one).")
@click.option("--overwrite", is_flag=True, help="Replace probability maps already in --output-dir.")
@click.option("--overlap", type=float, default=0.25, show_default=True, help="Sliding-window overlap in [0, 1).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--sw-batch-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Windows per forward pass.")
@click.option("--amp/--no-amp", default=False, show_default=True, help="Mixed precision forward passes.")
def infer_command(checkpoints: tuple[Path, ...], images: tuple[Path, ...], output_dir: Path, fmt: str,
                  crop: str | None, box, resolution: str | None, overwrite: bool, overlap: float, device: str,
                  sw_batch_size: int, amp: bool) -> None:
    """Write per-class probability maps for IMAGES (or a store's crop or box) with one checkpoint or an ensemble.

    One map per image, <image>_probabilities.nii.gz or .zarr, each written whole or not at all; every
    input is checked before the first is written, and a run that fails leaves no folder it created. With
    --crop or --box, IMAGES is one CellMap store and the map is an OME-NGFF group at the box's place.

    Exit status: 0 every map written, 2 a usage error (one line; maps already there are not replaced
    without --overwrite).
    """
    if crop is not None or box is not None:
        from cellcheck.grid import parse_resolution
        from trainer.infer import infer_store

        if len(images) != 1:
            raise click.UsageError("with --crop or --box give exactly one CellMap store (a *.zarr folder)")
        written = [infer_store(list(checkpoints), images[0], output_dir, crop=crop, box_nm=box,
                               resolution=parse_resolution(resolution), overlap=overlap, device=device, amp=amp,
                               overwrite=overwrite)]
    else:
        from trainer.infer import predict_to_files

        written = predict_to_files(list(checkpoints), list(images), output_dir, fmt=fmt, overlap=overlap,
                                   device=device, sw_batch_size=sw_batch_size, amp=amp, overwrite=overwrite)
    for path in written:
        click.echo(str(path))
