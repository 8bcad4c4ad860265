"""memory.png from a memory.jsonl: host memory over time per role, GPU memory per device, predicted peaks as lines.

A file appended to by several runs (a resumed training, `cellcheck profile` into the same file) holds
several sessions, each timed from its own start: they are drawn one after another, never over each other.

Shared by `cellcheck profile plot` and the trainer (which draws its predicted RAM and VRAM peaks on
the same axes). matplotlib with the Agg backend, so it runs on a login node without a display; the
PNG is written atomically.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from cellcheck.memory.gpus import GiB


def sessions(samples: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """The samples split into sessions: a new one at each "start" event, or where the clock goes back.

    Why: a resumed run appends to its memory.jsonl (and `cellcheck profile` to its file), and each session's
    `elapsed_s` starts again at 0.
    """
    out: list[list[Mapping[str, Any]]] = []
    for s in samples:
        if not out or s.get("event") == "start" or s["elapsed_s"] < out[-1][-1]["elapsed_s"]:
            out.append([])
        out[-1].append(s)
    return out


def running_time(groups: Sequence[Sequence[Mapping[str, Any]]]) -> tuple[list[float], list[float]]:
    """The x axis: seconds of running, each session after the one before (a NaN between them, so no line
    joins two sessions), and where each later session starts."""
    xs: list[float] = []
    starts: list[float] = []
    offset = 0.0
    for i, group in enumerate(groups):
        if i:
            xs.append(float("nan"))
            starts.append(offset)
        xs += [offset + g["elapsed_s"] for g in group]
        offset += group[-1]["elapsed_s"]
    return xs, starts


def _series(groups: Sequence[Sequence[Mapping[str, Any]]], value: Callable[[Mapping[str, Any]], float]) -> list[float]:
    """One value per sample, a NaN between sessions (matching `running_time`)."""
    out: list[float] = []
    for i, group in enumerate(groups):
        if i:
            out.append(float("nan"))
        out += [value(g) for g in group]
    return out


def figure_of_samples(samples: Sequence[Mapping[str, Any]], predicted: Mapping[str, int] | None = None,
                      predicted_gpu: Mapping[str, int] | None = None, title: str | None = None) -> Any:
    """The matplotlib Figure `plot_samples` saves: the tree's PSS (and with queued shared memory), its main and
    worker shares, GPU used, sessions one after another on one time axis, a dotted line at each restart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sessions(samples)
    t, restarts = running_time(groups)
    has_gpu = any(s.get("gpus") for s in samples)
    fig, axes = plt.subplots(2 if has_gpu else 1, 1, figsize=(9, 6 if has_gpu else 4), sharex=True, squeeze=False)
    host = axes[0][0]
    host.plot(t, _series(groups, lambda s: s["total"]["pss_bytes"] / GiB), color="black", label="process tree, PSS")
    if any(s["total"].get("unmapped_shm_bytes") for s in samples):
        host.plot(t, _series(groups, lambda s: s["total"]["footprint_bytes"] / GiB), color="black", linestyle="--",
                  label="PSS + batches waiting in shared memory")
    for role, color in (("main", "C0"), ("worker", "C1")):
        values = _series(groups, lambda s: s["roles"][role]["pss_bytes"] / GiB)
        if any(v == v and v for v in values):
            most = max(s["roles"][role]["count"] for s in samples)
            host.plot(t, values, color=color, label=f"{role} (at most {most} process{'es' if most > 1 else ''}), PSS")
    host.plot(t, _series(groups, lambda s: s["total"]["rss_bytes"] / GiB), color="grey", linestyle=":",
              label="process tree, RSS (shared pages counted per process)")
    for i, (label, value) in enumerate((predicted or {}).items()):
        host.axhline(value / GiB, linestyle="--", color=f"C{i + 2}", label=label)
    host.set_ylabel("host GiB")
    host.set_title(title or "memory over time")
    if has_gpu:
        gpu_ax = axes[1][0]
        indices = sorted({g["index"] for s in samples for g in s.get("gpus") or []})
        for index in indices:
            used = _series(groups, lambda s, index=index: next(
                (g["used_bytes"] / GiB for g in s.get("gpus") or [] if g["index"] == index), float("nan")))
            gpu_ax.plot(t, used, label=f"GPU {index} used (NVML)")
        total = max(g["total_bytes"] for s in samples for g in s.get("gpus") or [])
        gpu_ax.axhline(total / GiB, color="red", linewidth=0.8, label="GPU total")
        for i, (label, value) in enumerate((predicted_gpu or {}).items()):
            gpu_ax.axhline(value / GiB, linestyle="--", color=f"C{i + 4}", label=label)
        gpu_ax.set_ylabel("GPU GiB")
    for row in axes:
        for i, x in enumerate(restarts):
            row[0].axvline(x, color="grey", linewidth=0.8, linestyle=(0, (1, 3)),
                           label="restart (a new session)" if i == 0 else None)
        row[0].legend(loc="best", fontsize="small")
    axes[-1][0].set_xlabel("seconds running" + (f" ({len(groups)} sessions, one after another)" if restarts else ""))
    fig.tight_layout()
    return fig


def plot_samples(samples: Sequence[Mapping[str, Any]], out: str | os.PathLike[str],
                 predicted: Mapping[str, int] | None = None, predicted_gpu: Mapping[str, int] | None = None,
                 title: str | None = None) -> Path:
    """Draw `figure_of_samples` into the PNG `out`, atomically; return its path.

    `predicted` maps a label ("host RAM (predicted)") to bytes, drawn as a dashed line on the host
    axes; `predicted_gpu` the same on the GPU axes (drawn only when the record has GPUs).
    """
    import matplotlib.pyplot as plt

    from cellcheck.files import write_atomic

    fig = figure_of_samples(samples, predicted, predicted_gpu, title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    path = Path(out)
    write_atomic(path, buf.getvalue())
    return path
