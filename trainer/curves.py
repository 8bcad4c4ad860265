"""Training curves: progress.png from the run's epoch records, and optional TensorBoard event files.

`progress.png` (in the spirit of nnU-Net's progress.png) has three panels over epochs: the
training loss; the validation Dice of each class (thin) and their mean (thick); the learning
rate. It is drawn from `metrics.jsonl`'s epoch records, so a resumed run's figure holds the whole
run, and rewritten atomically after every epoch (matplotlib's Agg backend: no display needed).

TensorBoard (`tensorboard: true`, for users coming from MONAI bundles) needs the `tensorboard`
package, an optional extra (`pip install 'cellcheck[tensorboard]'`): the default install stays
light, and a config asking for it without the package is refused before the run starts.
"""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from cellcheck.files import write_atomic

#: The extra that brings the tensorboard package.
TENSORBOARD_HINT = "pip install 'cellcheck[tensorboard]' (or pip install tensorboard)"


def epoch_records(metrics: Path) -> list[dict[str, Any]]:
    """The epoch records of a metrics.jsonl (events left out; a line cut short by a killed job skipped)."""
    if not metrics.is_file():
        return []
    out = []
    for line in metrics.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "train_loss" in record and "epoch" in record:
            out.append(record)
    return out


def plot_progress(records: Sequence[Mapping[str, Any]], path: Path, title: str | None = None) -> Path:
    """Draw loss, per-class and mean validation Dice, and the learning rate over epochs into `path` (PNG).

    Epoch e's record (counted from 1) is drawn at x = e (epochs done); validation points only where it ran.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    x = [r["epoch"] for r in records]
    fig, (loss_ax, dice_ax, lr_ax) = plt.subplots(3, 1, figsize=(9, 9), sharex=True,
                                                  gridspec_kw={"height_ratios": [2, 3, 1]})
    loss_ax.plot(x, [r["train_loss"] if r["train_loss"] is not None else float("nan") for r in records],
                 color="C0", marker="." if len(x) < 50 else None)
    loss_ax.set_ylabel("training loss")
    loss_ax.set_title(title or "training progress")
    validated = [(e, r) for e, r in zip(x, records) if "val_dice" in r]
    classes = list(dict.fromkeys(c for _, r in validated for c in r["val_dice"]))
    cmap = plt.get_cmap("tab20")
    for i, name in enumerate(classes):
        pts = [(e, r["val_dice"][name]) for e, r in validated if name in r["val_dice"]]
        dice_ax.plot(*zip(*pts), color=cmap(i % 20), linewidth=0.9, alpha=0.8, label=name)
    if validated:
        dice_ax.plot([e for e, _ in validated], [r["val_dice_mean"] for _, r in validated], color="black",
                     linewidth=2.5, marker="o" if len(validated) < 50 else None, label="mean")
        dice_ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
    dice_ax.set_ylim(-0.02, 1.02)
    dice_ax.set_ylabel("validation Dice")
    lrs = [(e, r["learning_rate"]) for e, r in zip(x, records) if r.get("learning_rate") is not None]
    if lrs:
        lr_ax.plot(*zip(*lrs), color="C2")
    lr_ax.set_ylabel("learning rate")
    lr_ax.set_xlabel("epochs done")
    lr_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    write_atomic(path, buf.getvalue())
    return path


def tensorboard_missing() -> str | None:
    """Why `tensorboard: true` cannot be honoured here, in one line, or None when it can."""
    if importlib.util.find_spec("tensorboard") is None:
        return f"tensorboard: true needs the tensorboard package, which is not installed; {TENSORBOARD_HINT}, " \
               "or set tensorboard: false"
    return None


class TensorBoardLog:
    """Each epoch record as TensorBoard scalars under OUTPUT_DIR/tensorboard (one events file per start)."""

    def __init__(self, folder: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder))

    def add(self, record: Mapping[str, Any], global_step: int) -> None:
        """Scalars of one epoch record: train/loss, train/learning_rate, val/dice_mean, val/dice/<class>."""
        epoch = record["epoch"]
        if record.get("train_loss") is not None:
            self.writer.add_scalar("train/loss", record["train_loss"], epoch)
        if record.get("learning_rate") is not None:
            self.writer.add_scalar("train/learning_rate", record["learning_rate"], epoch)
        self.writer.add_scalar("train/global_step", global_step, epoch)
        if "val_dice" in record:
            self.writer.add_scalar("val/dice_mean", record["val_dice_mean"], epoch)
            for name, value in record["val_dice"].items():
                self.writer.add_scalar(f"val/dice/{name}", value, epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
