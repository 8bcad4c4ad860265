"""Per-class voxel targets as the CellMap store loader ships them: two packed bit masks, present and known.

Bit `c % 8` of byte `c // 8` is class c (`cellcheck.cellmap.reader` packs them that way), so a batch
carries (B, ceil(C/8), *spatial) uint8 twice instead of a (B, C, *spatial) target: one target per
class (a group class and its members can both be present), and unknown per class and voxel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from .resize import resize_labels_nearest

__all__ = ["VoxelTargets", "channel_bits"]


class VoxelTargets(NamedTuple):
    """(B, ceil(C/8), *spatial) uint8 bit masks: `present[b, c//8] >> c%8 & 1`, `known` likewise."""

    present: torch.Tensor
    known: torch.Tensor

    def flat(self, batch: int) -> "VoxelTargets":
        """(B, ceil(C/8), S) views, S the voxels."""
        return VoxelTargets(self.present.reshape(batch, self.present.shape[1], -1),
                            self.known.reshape(batch, self.known.shape[1], -1))

    def resized(self, size: Sequence[int]) -> "VoxelTargets":
        """Nearest-neighbour resize of both masks (deep supervision's coarser outputs)."""
        if tuple(self.present.shape[2:]) == tuple(size):
            return self
        return VoxelTargets(resize_labels_nearest(self.present, size), resize_labels_nearest(self.known, size))

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "VoxelTargets":
        return VoxelTargets(self.present.to(device, non_blocking=non_blocking),
                            self.known.to(device, non_blocking=non_blocking))


def channel_bits(packed: torch.Tensor, channel: int) -> torch.Tensor:
    """(B, nbytes, S) uint8 -> (B, S) uint8 0/1 of one class; why: no (B, C, S) mask is ever built."""
    byte, bit = divmod(channel, 8)
    return (packed[:, byte] >> bit) & 1
