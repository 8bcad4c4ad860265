"""`cellcheck predict` and `cellcheck profile`: the memory plan of a training run, and the memory of a real one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from cellcheck.cli.deprecated import Command
from cellcheck.cli.options import FORMAT_HELP, default_format, emit, gpu_mem, roi, size, slurm_mem
from cellcheck.errors import CellcheckError
from cellcheck.memory.gpus import DEFAULT_GPU, known_gpus
from cellcheck.memory.render import render_profile_summary, render_text


@click.command("predict", short_help="Predict Auto3DSeg's choice, GPU memory and host RAM.")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--model", type=click.Choice(["segresnet", "swinunetr", "dints"]), required=True,
              help="Auto3DSeg template network.")
@click.option("--gpu", default=DEFAULT_GPU.lower(), show_default=True,
              help=f"GPU profile: {', '.join(known_gpus())} (case-insensitive).")
@click.option("--gpu-mem", "gpu_mem", callback=gpu_mem, default=None,
              help="GPU memory with its unit (46068M, 45G), overriding the profile's.")
@click.option("--gpus", type=click.IntRange(min=1), default=1, show_default=True, help="DDP ranks (GPUs) per job.")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="DataLoader workers per rank (default: the bundle's num_workers, else the chain's: 4 for "
                   "the trainer, 8 for Auto3DSeg's templates).")
@click.option("--prefetch", type=click.IntRange(min=1), default=None, help="DataLoader prefetch factor (default 2).")
@click.option("--roi", callback=roi, default=None, help="Patch size in voxels, e.g. 96,96,96 (default: the template's).")
@click.option("--batch", type=click.IntRange(min=1), default=None, help="Patches per step (default: the template's).")
@click.option("--no-amp", "no_amp", is_flag=True, help="Train in float32 (default: bf16 autocast).")
@click.option("--one-hot", "one_hot", is_flag=True, help="Labels are expanded to 14 float32 channels in the workers.")
@click.option("--chain", type=click.Choice(["template", "trainer", "auto3dseg"]), default=None,
              help="Loading chain of the RAM model: auto3dseg (the DiNTS/SwinUNETR template's transforms; the default "
                   "for them, or the bundle's with --bundle), template (the field's measured pipeline: whole float32 "
                   "crops; the default with --one-hot or for segresnet) or trainer (cellcheck train's patches).")
@click.option("--expansion", type=click.Choice(["int64", "uint8", "none"]), default="int64", show_default=True,
              help="auto3dseg chain: the label-expansion Lambdad as shipped (sum of masks, int64 on the way), as "
                   "fixed ((x == c[0]).to(x.dtype)), or none (no class_names in the datalist).")
@click.option("--sigmoid", is_flag=True, help="auto3dseg chain: the task config sets sigmoid (a crop-label copy "
                                             "with a background channel drives the crop).")
@click.option("--label-cast", "label_cast", type=click.Choice(["uint8", "float32"]), default="uint8",
              show_default=True, help="auto3dseg chain: the label's dtype after the template's CastToTyped (float32 "
                                      "in the June 2023 template: float32 expanded channels).")
@click.option("--loader-batch", "loader_batch", type=click.IntRange(min=1), default=None,
              help="Crops per DataLoader batch (num_images_per_batch; default: the bundle's, else 2 for auto3dseg, 1).")
@click.option("--fold", type=click.IntRange(min=0), default=0, show_default=True,
              help="Validation fold: its crops are the validation volumes a rank holds, the others train.")
@click.option("--epochs", "epochs", type=click.IntRange(min=0), default=400, show_default=True,
              help="Epochs of the sampler's order to simulate for the typical case and the chance to cross --mem.")
@click.option("--patches", type=click.IntRange(min=1), default=2, show_default=True,
              help="With --chain trainer: patches per crop (num_patches_per_image).")
@click.option("--bundle", type=click.Path(path_type=Path), default=None,
              help="A generated Auto3DSeg bundle folder: its values are compared (stale-config), its DataLoader "
                   "settings and transforms_train.yaml feed the RAM model where no flag overrides them.")
@click.option("--mem", callback=slurm_mem, default=None, help="The job's --mem, with its unit (512G), to check host RAM against.")
@click.option("--rank-base", "rank_base", callback=size, default=None,
              help="Host memory of an idle rank measured on the node (e.g. 3.2G; `cellcheck profile`), instead of 3G.")
@click.option("--worker-base", "worker_base", callback=size, default=None,
              help="Host memory of an idle DataLoader worker measured on the node (e.g. 300M), instead of 512M.")
@click.option("--max-batch/--no-max-batch", "max_batch", default=True, show_default=True,
              help="Search the largest batch that fits (a few more fake steps).")
@click.option("--format", "fmt", type=click.Choice(["json", "text"]), default=None, help=FORMAT_HELP)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write the prediction to FILE (atomically) instead of stdout.")
@click.option("--classes", type=click.Path(path_type=Path), default=None,
              help="Training classes, one name per line (CSV) or a YAML list (default: the field's 14): "
                   "the network's output channels and the label expansion's.")
def predict_command(path: Path, model: str, gpu: str, gpu_mem: float | None, gpus: int, workers: int, prefetch: int,
                    roi: list[int] | None, batch: int | None, no_amp: bool, one_hot: bool, chain: str | None,
                    expansion: str, sigmoid: bool, label_cast: str, loader_batch: int | None, fold: int,
                    epochs: int, patches: int,
                    bundle: Path | None, mem: str | None, rank_base: str | None, worker_base: str | None,
                    max_batch: bool, fmt: str | None, output: Path | None, classes: Path | None) -> None:
    """Predict Auto3DSeg's batch/epochs, peak GPU memory and host RAM for training on PATH (a datalist).

    Exit status: 0 the run fits, 1 the GPU or the node's memory (--mem) would not hold it, 2 a usage error.
    """
    from cellcheck.classes import load_class_map
    from cellcheck.memory.predict import predict

    result = predict(path, model, gpu=gpu, gpus=gpus, workers=workers, prefetch=prefetch, roi=roi, batch=batch,
                     amp=not no_amp, one_hot=one_hot, bundle=bundle, mem=mem, gpu_mem_mib=gpu_mem,
                     search_max_batch=max_batch, rank_base=rank_base, worker_base=worker_base, chain=chain,
                     num_patches=patches, expansion=expansion, sigmoid=sigmoid, loader_batch=loader_batch, fold=fold,
                     label_cast=label_cast, epochs=epochs, classes=load_class_map(classes))
    fmt = fmt or default_format()
    emit(json.dumps(result, indent=2) + "\n" if fmt == "json" else render_text(result), output)
    if not result["fits"]:
        sys.exit(1)


class _ProfileGroup(click.Group):
    """`cellcheck profile [OPTIONS] -- CMD` runs CMD (the `run` subcommand); `cellcheck profile plot FILE` draws."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group("profile", cls=_ProfileGroup, short_help="Record a command's memory, or plot a record.")
def profile_command() -> None:
    """Record the memory of a command's process tree and GPUs (`profile -- CMD`), or plot a record (`profile plot`).

    Exit status: the command's own (profile -- CMD), 0 a plot written (profile plot), 2 a usage error.
    """


@profile_command.command("run", cls=Command, renamed={"--out": "--output"},
                         context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
                         short_help="Run a command and record its memory.")
@click.option("--output", "-o", "out", type=click.Path(path_type=Path, dir_okay=False), default=Path("memory.jsonl"),
              show_default=True, help="JSON lines file to append samples to.")
@click.option("--interval", type=click.FloatRange(min=0.01), default=1.0, show_default=True, help="Seconds between samples.")
@click.option("--summary-json", "summary_json", type=click.Path(path_type=Path), default=None,
              help="Also write the summary (peaks) as JSON to this file.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
def profile_run(out: Path, interval: float, summary_json: Path | None, command: tuple[str, ...]) -> None:
    """Run COMMAND (after --), sampling RSS, USS and PSS of its process tree, host and GPU memory.

    The summary goes to stderr: the tree's peak PSS, split into main and worker processes, and the one
    process that peaked. A file that already holds samples is appended to: each run is a session of its own.

    Exit status: COMMAND's own; 2 when it cannot be started (one line).
    """
    from cellcheck.memory.profiler import profile_command as run_profiled
    from cellcheck.files import write_atomic

    status, summary = run_profiled(list(command), out, interval)
    click.echo(render_profile_summary(summary, out), err=True, nl=False)
    if summary_json is not None:
        write_atomic(summary_json, json.dumps(summary, indent=2) + "\n")
    sys.exit(status)


@profile_command.command("plot", cls=Command, renamed={"--out": "--output"},
                         short_help="Draw a memory record (memory.jsonl) as a PNG.")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--output", "-o", "out", type=click.Path(path_type=Path, dir_okay=False), default=Path("memory.png"),
              show_default=True, help="PNG to write (atomically).")
def profile_plot(path: Path, out: Path) -> None:
    """Draw memory over time per role (main, worker) and per GPU from a `cellcheck profile` JSON lines file.

    Exit status: 0 the PNG was written, 2 a usage error (no such record, cannot write the PNG).
    """
    from cellcheck.memory.plot import plot_samples, sessions
    from cellcheck.memory.profiler import read_samples
    from cellcheck.words import counted

    samples = read_samples(path)
    runs = counted(len(sessions(samples)), "session")
    try:
        plot_samples(samples, out, title=f"{path.name}: {counted(len(samples), 'sample')}, {runs}")
    except OSError as exc:
        raise CellcheckError(f"{out}: cannot write the plot ({exc.strerror or exc}); choose another --output") from None
    click.echo(f"cellcheck profile plot: {out} ({counted(len(samples), 'sample')} in {runs})", err=True)
