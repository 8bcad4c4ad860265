"""Integer label maps resized by nearest neighbour, as deep supervision compares them with coarser outputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["resize_labels_nearest"]


def resize_labels_nearest(labels: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(B, K, *spatial) int labels -> (B, K, *size), same dtype; why: integer-safe nearest-exact resize.

    Same source index as ``F.interpolate(mode="nearest-exact", size=size)`` (what MONAI's
    ``DeepSupervisionLoss`` uses): src = min(floor((dst + 0.5) * in / out), in - 1).  Done by
    ``index_select`` per axis, so any integer dtype works and no float copy is made.
    """
    spatial = labels.shape[2:]
    if len(size) != len(spatial):
        raise ValueError(f"size {tuple(size)} does not match the {len(spatial)} spatial dims of {tuple(labels.shape)}")
    out = labels
    for axis, (n_in, n_out) in enumerate(zip(spatial, size)):
        if n_in == n_out:
            continue
        scale = n_in / n_out
        src = torch.floor((torch.arange(n_out, dtype=torch.float64) + 0.5) * scale).clamp_(max=n_in - 1)
        out = out.index_select(axis + 2, src.to(device=labels.device, dtype=torch.long))
    return out
