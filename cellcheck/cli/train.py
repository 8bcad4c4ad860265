"""`cellcheck train` and `cellcheck infer`: the gated trainer, and probability maps from its checkpoints.

torch is imported only when a command runs, so `cellcheck audit` never pays for it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click


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


@click.command("train")
@click.option("--config", "-c", "config", type=click.Path(path_type=Path, readable=False), required=True,
              help="Training config (YAML).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key (repeatable).")
@click.option("--resume", is_flag=True,
              help="Continue the run in OUTPUT_DIR from its last.pt, exactly where it stopped. Without it, an "
                   "OUTPUT_DIR that already holds a run is refused (exit 1) and left as it is.")
@click.option("--mem", help="Host memory of the job (default: SLURM_MEM_PER_NODE, else the config's).")
def train_command(config: Path, overrides: tuple[str, ...], resume: bool, mem: str | None) -> None:
    """Train SegResNet, SwinUNETR or DiNTS with the masked loss, after the gate passes.

    Exit status: 0 done (or stopped on SIGTERM/SIGUSR1 with a checkpoint), 1 refused (the gate, or a run
    already in OUTPUT_DIR without --resume), 2 a usage error, 3 stopped on repeated non-finite losses.
    """
    from cellcheck.config import parse_overrides
    from trainer.train import train

    sys.exit(train(config, parse_overrides(list(overrides)), resume=resume, mem=mem))


@click.command("infer")
@click.option("--checkpoint", "checkpoints", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Trainer checkpoint (.pt); repeat to ensemble (probabilities are averaged).")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--output", "output_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder for the probability maps (created if missing).")
@click.option("--format", "fmt", type=click.Choice(["nifti", "zarr"]), default="nifti", show_default=True,
              help="For images: nifti (4D, class last, input affine) or zarr (a format-2 array (C, Z, Y, X)).")
@click.option("--crop", help="IMAGES is one CellMap store: infer this crop of it (an OME-NGFF group out).")
@click.option("--box", callback=_box, help="IMAGES is one CellMap store: infer this box, Z0,Y0,X0,Z1,Y1,X1 in nm.")
@click.option("--resolution", help="With --crop/--box: the voxel size in nm (default: the checkpoint's training one).")
@click.option("--overlap", type=float, default=0.25, show_default=True, help="Sliding-window overlap in [0, 1).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--sw-batch-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Windows per forward pass.")
@click.option("--amp/--no-amp", default=False, show_default=True, help="Mixed precision forward passes.")
def infer_command(checkpoints: tuple[Path, ...], images: tuple[Path, ...], output_dir: Path, fmt: str,
                  crop: str | None, box, resolution: str | None, overlap: float, device: str, sw_batch_size: int,
                  amp: bool) -> None:
    """Write per-class probability maps for IMAGES (or a store's crop) with one checkpoint or an ensemble."""
    if crop is not None or box is not None:
        from cellcheck.grid import parse_resolution
        from trainer.infer import infer_store

        if len(images) != 1:
            raise click.UsageError("with --crop or --box give exactly one CellMap store (a *.zarr folder)")
        written = [infer_store(list(checkpoints), images[0], output_dir, crop=crop, box_nm=box,
                               resolution=parse_resolution(resolution), overlap=overlap, device=device, amp=amp)]
    else:
        from trainer.infer import predict_to_files

        written = predict_to_files(list(checkpoints), list(images), output_dir, fmt=fmt, overlap=overlap,
                                   device=device, sw_batch_size=sw_batch_size, amp=amp)
    for path in written:
        click.echo(str(path))
