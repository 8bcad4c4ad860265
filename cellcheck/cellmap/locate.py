"""Where a converted image or label really comes from, when it is not where its header says.

A converter that pairs levels by name, reads the raw from the wrong origin or drops the voxel size
writes copies of real data at the wrong place or scale. The first voxels of such an image are found
again in the raw pyramid by an exact-match search (sum of squared differences over a window of
offsets, by FFT) at every raw level, and the first voxels of a label among the crop's own levels.
With where each really starts and its true voxel size, the misalignment at any voxel follows.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from cellcheck.cellmap.plan import Refused
from cellcheck.cellmap.render import compose_label
from cellcheck.cellmap.stores import Crop, RawPyramid
from cellcheck.classes import ClassMap
from cellcheck.grid import format_scale
from cellcheck.readers.zarr_volume import ZarrVolume

#: Voxels per side of the probe cut from the entry's first corner.
PROBE = 24
#: Offsets searched on each side of where the crop starts, per raw level (voxels of that level).
WINDOW = 24
#: A match: mean squared difference per voxel at most this (uint8 copies match exactly).
MAX_MSD = 0.5
#: A label match: at least this share of voxels equal.
MIN_AGREEMENT = 0.98


@dataclass(frozen=True)
class Found:
    """Content found at `level` (a raw or crop level): its voxel 0 sits at `position` (nm), steps of `scale`."""

    what: str  # "raw s0", "crop s1"
    scale: tuple[float, ...]
    position: tuple[float, ...]

    def at(self, index: np.ndarray) -> np.ndarray:
        """World position (nm) of the content of entry voxel `index` (per axis)."""
        return np.asarray(self.position) + np.asarray(index) * np.asarray(self.scale)

    def describe(self) -> str:
        return f"{self.what} ({format_scale(self.scale)})"


def locate_image(probe: np.ndarray, at: np.ndarray, raw: RawPyramid, corner: np.ndarray, max_bytes: int) -> Found | None:
    """The raw level and voxel whose content equals `probe` (entry image voxels from index `at`), near the crop.

    Each raw level is one hypothesis: the image is that level's voxels, one for one, from some start near
    the crop's corner (`corner`, nm).
    """
    if probe.size == 0 or probe.min() == probe.max():
        return None  # a blank or constant box matches anywhere
    best: tuple[float, Found] | None = None
    for lv in raw.levels:
        scale, trans = np.asarray(lv.scale), np.asarray(lv.translation)
        near = np.rint((corner + scale / 2 - trans) / scale).astype(np.int64) + np.asarray(at)
        shape = np.asarray(raw.shapes[lv.path])
        lo = np.maximum(near - WINDOW, 0)
        hi = np.minimum(near + WINDOW + np.asarray(probe.shape), shape)
        if (hi - lo < np.asarray(probe.shape)).any():
            continue
        region = ZarrVolume.level(raw.group, raw.path, lv, tuple(zip(lo.tolist(), hi.tolist()))).read(max_bytes)
        offset, msd = _best_offset(region.astype(np.float64), probe.astype(np.float64))
        if msd <= MAX_MSD and (best is None or msd < best[0]):
            start = lo + np.asarray(offset) - np.asarray(at)  # the raw voxel under entry voxel 0
            best = (msd, Found(f"raw {lv.path}", tuple(lv.scale), tuple((trans + start * scale).tolist())))
    return None if best is None else best[1]


def probe_at(label: np.ndarray) -> np.ndarray:
    """Where in `label` (the entry's first corner) a PROBE box holds the most labelled structure: index of its corner.

    A box of one value matches any level (and all-background corners are common); boundaries do not.
    """
    steps = [range(0, max(1, n - PROBE + 1), PROBE // 2) for n in label.shape]
    best, where = -1, (0, 0, 0)
    for corner in itertools.product(*steps):
        box = label[tuple(slice(c, c + PROBE) for c in corner)]
        score = int(np.count_nonzero(box[1:] != box[:-1]) + np.count_nonzero(box[:, 1:] != box[:, :-1]))
        if score > best:
            best, where = score, corner
    return np.asarray(where)


def _best_offset(region: np.ndarray, probe: np.ndarray) -> tuple[tuple[int, ...], float]:
    """Offset of `probe` inside `region` with the least squared difference, and its mean squared difference."""
    full = region.shape
    fr = np.fft.rfftn(region)
    axes = tuple(range(region.ndim))
    fp = np.fft.rfftn(probe, s=full, axes=axes)
    corr = np.fft.irfftn(fr * np.conj(fp), s=full, axes=axes)
    valid = tuple(n - p + 1 for n, p in zip(full, probe.shape))
    corr = corr[tuple(slice(0, v) for v in valid)]
    sq = _box_sums(region * region, probe.shape)
    ssd = sq - 2 * corr + float((probe * probe).sum())
    offset = np.unravel_index(int(np.argmin(ssd)), ssd.shape)
    window = region[tuple(slice(o, o + p) for o, p in zip(offset, probe.shape))]
    return tuple(int(o) for o in offset), float(((window - probe) ** 2).mean())  # exact, not the FFT's estimate


def _box_sums(a: np.ndarray, box: tuple[int, ...]) -> np.ndarray:
    """Sum of `a` over every box of shape `box` (valid positions only)."""
    c = a
    for axis, k in enumerate(box):
        c = np.cumsum(c, axis=axis)
        pad = [(0, 0)] * c.ndim
        pad[axis] = (1, 0)
        c = np.pad(c, pad)
        n = c.shape[axis]
        c = np.take(c, range(k, n), axis=axis) - np.take(c, range(0, n - k), axis=axis)
    return c


def locate_label(probe: np.ndarray, at: np.ndarray, crop: Crop, names: tuple[str, ...], write: tuple[str, ...],
                 classes: ClassMap, max_bytes: int) -> Found | None:
    """The crop level whose composed label equals `probe` (entry label voxels from index `at`), voxel for voxel."""
    if probe.size == 0 or probe.min() == probe.max() or not names:
        return None
    ref = crop.classes[names[0]]
    best: tuple[float, Found] | None = None
    for lv in ref.levels:
        shape = ref.shapes[lv.path]
        box = tuple((int(a), int(min(a + p, n))) for a, p, n in zip(at, probe.shape, shape))
        if any(b - a < 2 for a, b in box):
            continue
        try:
            composed = compose_label(crop, names, write, lv, box, classes, max_bytes)
        except Refused:
            continue
        agreement = float((composed == probe[tuple(slice(0, b - a) for a, b in box)]).mean())
        if agreement >= MIN_AGREEMENT and (best is None or agreement > best[0]):
            best = (agreement, Found(f"crop {lv.path}", tuple(lv.scale), tuple(lv.translation)))
    return None if best is None else best[1]
