"""memory.png from a memory.jsonl: host memory over time per role, GPU memory per device, predicted peaks as lines.

Shared by `cellcheck profile plot` and the trainer (which draws its predicted RAM and VRAM peaks on
the same axes). matplotlib with the Agg backend, so it runs on a login node without a display; the
PNG is written atomically.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from cellcheck.memory.gpus import GiB


def plot_samples(samples: Sequence[Mapping[str, Any]], out: str | os.PathLike[str],
                 predicted: Mapping[str, int] | None = None, predicted_gpu: Mapping[str, int] | None = None,
                 title: str | None = None) -> Path:
    """Draw the tree's PSS (and with queued shared memory), its main and worker shares, GPU used; return the PNG.

    `predicted` maps a label ("host RAM (predicted)") to bytes, drawn as a dashed line on the host
    axes; `predicted_gpu` the same on the GPU axes (drawn only when the record has GPUs).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cellcheck.files import write_atomic

    t = [s["elapsed_s"] for s in samples]
    has_gpu = any(s.get("gpus") for s in samples)
    fig, axes = plt.subplots(2 if has_gpu else 1, 1, figsize=(9, 6 if has_gpu else 4), sharex=True, squeeze=False)
    host = axes[0][0]
    host.plot(t, [s["total"]["pss_bytes"] / GiB for s in samples], color="black", label="process tree, PSS")
    if any(s["total"].get("unmapped_shm_bytes") for s in samples):
        host.plot(t, [s["total"]["footprint_bytes"] / GiB for s in samples], color="black", linestyle="--",
                  label="PSS + batches waiting in shared memory")
    for role, color in (("main", "C0"), ("worker", "C1")):
        values = [s["roles"][role]["pss_bytes"] / GiB for s in samples]
        if any(values):
            most = max(s["roles"][role]["count"] for s in samples)
            host.plot(t, values, color=color, label=f"{role} (at most {most} process{'es' if most > 1 else ''}), PSS")
    host.plot(t, [s["total"]["rss_bytes"] / GiB for s in samples], color="grey", linestyle=":",
              label="process tree, RSS (shared pages counted per process)")
    for i, (label, value) in enumerate((predicted or {}).items()):
        host.axhline(value / GiB, linestyle="--", color=f"C{i + 2}", label=label)
    host.set_ylabel("host GiB")
    host.legend(loc="best", fontsize="small")
    host.set_title(title or "memory over time")
    if has_gpu:
        gpu_ax = axes[1][0]
        indices = sorted({g["index"] for s in samples for g in s.get("gpus") or []})
        for index in indices:
            used = [next((g["used_bytes"] / GiB for g in s.get("gpus") or [] if g["index"] == index), float("nan"))
                    for s in samples]
            gpu_ax.plot(t, used, label=f"GPU {index} used (NVML)")
        total = max(g["total_bytes"] for s in samples for g in s.get("gpus") or [])
        gpu_ax.axhline(total / GiB, color="red", linewidth=0.8, label="GPU total")
        for i, (label, value) in enumerate((predicted_gpu or {}).items()):
            gpu_ax.axhline(value / GiB, linestyle="--", color=f"C{i + 4}", label=label)
        gpu_ax.set_ylabel("GPU GiB")
        gpu_ax.legend(loc="best", fontsize="small")
    axes[-1][0].set_xlabel("seconds")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    path = Path(out)
    write_atomic(path, buf.getvalue())
    return path
