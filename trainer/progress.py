"""What a training run says while it runs: a first line, a bar over steps, one line per epoch, a last line.

On a terminal each epoch shows a rich progress bar over its steps (erased when the epoch ends); in a
file or a pipe (a SLURM log) there is nothing per step, so the log holds only the lines:

    cellcheck train: segresnet (1.2 M parameters) on cpu, 1 rank; 12 training / 4 validation crops; ...
    epoch 1/50  loss 0.9431  skipped 0  val Dice 0.412 (worst er_lum 0.00, ves_lum 0.05)  41.2 s + 3.0 s validation  host 3.1 GiB
    cellcheck train: finished 50 epochs in 35 min (best val Dice 0.61 at epoch 47); runs/demo: best.pt 4.9 MB ...

Only rank 0 speaks. The bar reads the step count, never the loss: showing a loss per step would cost
a host sync per step.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TextIO

GiB = 2**30


def human_bytes(n: float) -> str:
    """Bytes as B, kB, MB or GB (decimal: what `ls -h`-style listings of checkpoints suggest)."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def human_seconds(s: float) -> str:
    """Seconds as '41 s', '12 min', '3 h 05 min'."""
    if s < 120:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s / 60:.0f} min"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


def epoch_line(record: Mapping[str, Any], num_epochs: int, worst: int = 3) -> str:
    """One line for an epoch record of metrics.jsonl (epochs counted from 1): loss, skips, validation (mean and
    worst classes), time, memory."""
    loss = record.get("train_loss")
    parts = [f"epoch {record['epoch']}/{num_epochs}",
             f"loss {loss:.4f}" if loss is not None else "loss -",
             f"skipped {record.get('nonfinite_skipped', 0)}"]
    if "val_dice" in record:
        low = sorted(record["val_dice"].items(), key=lambda kv: kv[1])[:worst]
        detail = ", ".join(f"{name} {value:.2f}" for name, value in low)
        parts.append(f"val Dice {record['val_dice_mean']:.3f}" + (f" (worst {detail})" if detail else ""))
    else:
        parts.append("val -")
    val_s = f" + {record['val_seconds']:.1f} s validation" if record.get("val_seconds") is not None else ""
    parts.append(f"{record['seconds']:.1f} s{val_s}")
    if record.get("host_peak_bytes"):
        parts.append(f"host {record['host_peak_bytes'] / GiB:.1f} GiB")
    if record.get("max_memory_reserved"):
        parts.append(f"GPU {record['max_memory_reserved'] / GiB:.1f} GiB")
    return "  ".join(parts)


def files_line(out: Path, names: Sequence[str]) -> str:
    """'OUT: best.pt 4.9 MB, last.pt 15 MB, metrics.jsonl, ...': what the folder holds, checkpoint sizes first."""
    shown = []
    for name in names:
        path = out / name
        if not path.exists():
            continue
        shown.append(f"{name} {human_bytes(path.stat().st_size)}" if name.endswith(".pt") else name)
    return f"{out}: {', '.join(shown)}"


class Console:
    """Rank 0's voice: plain lines on stdout, what went wrong on stderr; a transient rich bar per epoch when
    stdout is a terminal. The training run says everything through the one it is handed."""

    def __init__(self, rank: int = 0, stream: TextIO | None = None, errors: TextIO | None = None) -> None:
        self.rank = rank
        self.stream = stream
        self.errors = errors

    @property
    def out(self) -> TextIO:
        return self.stream or sys.stdout

    def warn(self, text: str) -> None:
        """A line about a refusal, a stop or a problem, on stderr (rank 0 only)."""
        if self.rank == 0:
            print(text, file=self.errors or sys.stderr, flush=True)

    @property
    def interactive(self) -> bool:
        return self.rank == 0 and hasattr(self.out, "isatty") and self.out.isatty()

    def line(self, text: str) -> None:
        if self.rank == 0:
            print(text, file=self.out, flush=True)

    @contextmanager
    def steps(self, description: str, total: int | None) -> Iterator[Callable[[], None]]:
        """A context giving `advance()` for each step: a bar on a terminal, nothing otherwise."""
        if not self.interactive:
            yield lambda: None
            return
        from rich.console import Console as RichConsole
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        from rich.progress import TimeRemainingColumn

        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
                       TimeElapsedColumn(), TextColumn("<"), TimeRemainingColumn(),
                       console=RichConsole(file=self.out), transient=True)
        with bar:
            task = bar.add_task(description, total=total)
            yield lambda: bar.advance(task)
