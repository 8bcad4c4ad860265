"""Intensity steps across label boundaries: what the label-contrast check compares between crops.

For every pair of neighbouring voxels (within planes of the last axis, and across them while every plane
is read) whose labels differ, a < b, the step
I(a side) - I(b side) is added to that label pair's sum. In FIB-SEM a membrane is darker than the
lumen and the cytosol on either side of it, so where a label follows its image these steps are
large and of a consistent sign for each pair, crop after crop; where the label is shifted or at the
wrong scale they average out to about zero. Steps between neighbours cancel the smooth intensity
variation that dominates EM crops, so even small crops give a usable signal. Only boundaries are
touched (a few % of the voxels), and crops over `MAX_VOXELS` are read on a subset of planes:
2^17 voxels give thousands of boundary pairs, and keep the audit's joint pass within ~15 % of its
cost without them (on the audit benchmark's boundary-dense labels).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Voxels of a crop whose boundaries are counted; larger crops use every k-th plane of the last axis.
MAX_VOXELS = 1 << 17
_PAIRS = 1 << 16


@dataclass
class BoundaryStats:
    """Per label pair (key a * 256 + b, a < b): neighbour pairs and the sum of their steps; all steps' squares."""

    stride: int = 1
    count: np.ndarray = field(default_factory=lambda: np.zeros(_PAIRS, dtype=np.int64))
    total: np.ndarray = field(default_factory=lambda: np.zeros(_PAIRS, dtype=np.float64))
    squares: float = 0.0
    _last: tuple[tuple[int, ...], np.ndarray, np.ndarray] | None = None  # the previous block's last plane, kept

    @classmethod
    def for_volume(cls, voxels: int) -> "BoundaryStats":
        return cls(stride=max(1, -(-voxels // MAX_VOXELS)))

    def add(self, image: np.ndarray, label: np.ndarray, start: tuple[int, ...]) -> None:
        """Add the boundaries inside one block: uint8 image and label of the same 3D shape at `start`.

        Neighbours along the first two axes within planes of the last; along the last axis too while every
        plane is read (stride 1), the previous block's last plane kept for the next block's first, so the
        statistic does not depend on how many planes a NIfTI slab holds.
        """
        if image.ndim != 3 or image.shape != label.shape or image.dtype != np.uint8 or label.dtype != np.uint8:
            return
        if self.stride > 1:
            keep = slice((-start[2]) % self.stride, None, self.stride)
            image, label = image[:, :, keep], label[:, :, keep]
        else:
            self._across(image, label, tuple(start))
        order = "F" if label.flags.f_contiguous else "C"
        image, label = np.asarray(image, order=order), np.asarray(label, order=order)
        flat_image, flat_label = image.ravel(order="K"), label.ravel(order="K")
        for axis in (0, 1):
            self._axis(flat_image, flat_label, label.shape[axis], label.strides[axis])

    def _across(self, image: np.ndarray, label: np.ndarray, start: tuple[int, ...]) -> None:
        """Neighbours along the last axis: inside the block, and from the previous block's last plane."""
        last, self._last = self._last, ((start[0], start[1], start[2] + image.shape[2]), image[:, :, -1:].copy(),
                                        label[:, :, -1:].copy())
        if last is not None and last[0] == start and last[1].shape[:2] == image.shape[:2]:
            image, label = np.concatenate([last[1], image], axis=2), np.concatenate([last[2], label], axis=2)
        image, label = np.ascontiguousarray(image), np.ascontiguousarray(label)
        self._axis(image.ravel(), label.ravel(), label.shape[2], label.strides[2])

    def _axis(self, image: np.ndarray, label: np.ndarray, size: int, offset: int) -> None:
        """Neighbours `offset` apart in the flat (contiguous) arrays, along an axis of `size` voxels."""
        if size < 2:
            return
        edge = np.flatnonzero(label[:-offset] != label[offset:])
        edge = edge[(edge // offset) % size != size - 1]  # the last voxel of a row has no neighbour in it
        if not edge.size:
            return
        a, b = label[edge], label[edge + offset]
        step = image[edge].astype(np.int16) - image[edge + offset]
        flip = a > b
        np.negative(step, out=step, where=flip)
        key = np.where(flip, b, a).astype(np.uint16) << 8 | np.where(flip, a, b)
        weights = step.astype(np.float64)  # (np.dot of int16 and float64 takes a slow generic path)
        counts = np.bincount(key)  # as long as the largest key seen, not all 65536
        self.count[: counts.size] += counts
        self.total[: counts.size] += np.bincount(key, weights=weights, minlength=counts.size)
        self.squares += float(np.dot(weights, weights))

    def compact(self) -> "PairSteps":
        """The label pairs seen, as small arrays (what travels back from a worker)."""
        keys = np.flatnonzero(self.count)
        return PairSteps(keys, self.count[keys], self.total[keys], self.squares)


@dataclass(frozen=True)
class PairSteps:
    """Boundary steps of one crop: label pair keys (a * 256 + b), counts and sums; the sum of every step squared."""

    keys: np.ndarray
    count: np.ndarray
    total: np.ndarray
    squares: float
