"""Crop levels paired with raw levels by physical voxel size, and the resolutions a crop can train at.

Most CellMap crops are annotated at half the raw voxel size (4 nm crops over 8 nm raw, 2.62x2x2 nm
over 5.24x4x4 nm), so a crop's s0 almost never has a raw level of its own: its s1 does. A crop
coarser than the raw by 2^k pairs with raw s_k. Pairing by level name or by s0 is the field's
converter bug; here a crop level and a raw level pair only when their voxel sizes are equal, and
the crop is *trainable* at that resolution when it also sits on the raw grid there (its voxel 0
starts at a whole raw voxel) and the raw has chunks under it (not metadata alone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from cellcheck.cellmap.stores import ClassArray, RawPyramid
from cellcheck.grid import same_scale
from cellcheck.readers.ome_ngff import Level

#: How far (in voxels) a crop may sit from the raw grid and still count as on it.
GRID_TOLERANCE = 0.01


@dataclass(frozen=True)
class Pairing:
    """One crop level and the raw level with the same voxel size."""

    crop_level: Level
    crop_shape: tuple[int, ...]
    raw_level: Level
    raw_shape: tuple[int, ...]
    has_data: bool

    @property
    def scale(self) -> tuple[float, ...]:
        return self.crop_level.scale

    @property
    def offset(self) -> np.ndarray:
        """Position of the crop's voxel 0 in raw voxels of this level (voxel centres on both sides)."""
        return _offset(self.crop_level, self.raw_level)

    @property
    def grid_error(self) -> np.ndarray:
        """Per axis, how far (in voxels) the crop sits off the raw grid."""
        return np.abs(self.offset - np.rint(self.offset))

    @property
    def on_grid(self) -> bool:
        return bool((self.grid_error <= GRID_TOLERANCE).all())

    @property
    def start(self) -> np.ndarray:
        return np.rint(self.offset).astype(np.int64)

    @property
    def stop(self) -> np.ndarray:
        return self.start + np.asarray(self.crop_shape, dtype=np.int64)

    @property
    def in_bounds(self) -> bool:
        return bool((self.start >= 0).all() and (self.stop <= np.asarray(self.raw_shape)).all())

    @property
    def trainable(self) -> bool:
        return self.on_grid and self.has_data


def pair_levels(labels: ClassArray, raw: RawPyramid) -> list[Pairing]:
    """Every level of a crop's class array that has a raw level of the same voxel size, finest first."""
    out = []
    for lv in labels.levels:
        raw_level = raw.level_at(lv.scale)
        if raw_level is None:
            continue
        shape = labels.shapes[lv.path]
        start = np.rint(_offset(lv, raw_level)).astype(np.int64)
        has_data = raw.has_data(raw_level, start, start + np.asarray(shape, dtype=np.int64))
        out.append(Pairing(lv, shape, raw_level, raw.shapes[raw_level.path], has_data))
    return out


def _offset(crop_level: Level, raw_level: Level) -> np.ndarray:
    return (np.asarray(crop_level.translation) - np.asarray(raw_level.translation)) / np.asarray(crop_level.scale)


def at_resolution(pairings: Sequence[Pairing], resolution: tuple[float, ...]) -> Pairing | None:
    """The pairing at `resolution` (nm per axis), if the crop and the raw both have a level there."""
    return next((p for p in pairings if same_scale(p.scale, resolution)), None)
