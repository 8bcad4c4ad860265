"""Sliding windows that tile a box, each voxel owned by exactly one window: validation and inference one window at a time.

Windows of the network's ROI step across the box with the given overlap; where two overlap, each owns
the half nearer its own centre, so every voxel's prediction comes from one window and away from a
window's edge where it can. Nothing box-sized is ever held: a window's probabilities are scored (or
written) over its owned part and dropped. A side shorter than the ROI gets one window centred on it
(the part outside the box is context: the reader fills it, the scoring ignores it).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Window:
    """Voxels [lo, hi) go through the network; [own_lo, own_hi) are scored from it (box coordinates)."""

    lo: tuple[int, ...]
    hi: tuple[int, ...]
    own_lo: tuple[int, ...]
    own_hi: tuple[int, ...]

    @property
    def owned(self) -> tuple[slice, ...]:
        """The owned part, as slices into the window's output."""
        return tuple(slice(a - lo, b - lo) for a, b, lo in zip(self.own_lo, self.own_hi, self.lo))


def _axis(size: int, roi: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """(lo, hi, own_lo, own_hi) of each window along one axis."""
    if size <= roi:
        lo = (size - roi) // 2
        return [(lo, lo + roi, 0, size)]
    step = max(1, int(roi * (1.0 - overlap)))
    starts = sorted({*range(0, size - roi, step), size - roi})
    bounds = [0] + [(b + a + roi) // 2 for a, b in zip(starts, starts[1:])] + [size]
    return [(a, a + roi, bounds[i], bounds[i + 1]) for i, a in enumerate(starts)]


def tiles(shape: Sequence[int], roi: Sequence[int], overlap: float = 0.25) -> list[Window]:
    """Windows of `roi` over a box of `shape` (voxels, z y x), every voxel owned by one of them."""
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    axes = [_axis(int(n), int(r), overlap) for n, r in zip(shape, roi)]
    return [Window(tuple(a[0] for a in combo), tuple(a[1] for a in combo), tuple(a[2] for a in combo),
                   tuple(a[3] for a in combo)) for combo in itertools.product(*axes)]
