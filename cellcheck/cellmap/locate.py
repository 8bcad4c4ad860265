"""Where a converted image or label really comes from, when it is not where its header says.

A converter that pairs levels by name, reads the raw from the wrong origin or drops the voxel size
writes copies of real data at the wrong place or scale. The first voxels of such an image are found
again in the raw pyramid by an exact-match search (sum of squared differences over a window of
offsets, by FFT) at every raw level, and the first voxels of a label among the crop's own levels.
With where each really starts and its true voxel size, the misalignment at any voxel follows.

An entry whose name and provenance say nothing of its crop is placed the same way (`place_by_content`):
the crops whose level shapes match the entry's are searched first, near each crop's corner, a bounded
number of them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Sequence

import numpy as np

from cellcheck.cellmap.geometry import reference_array
from cellcheck.cellmap.plan import Refused
from cellcheck.cellmap.render import compose_label
from cellcheck.cellmap.stores import Crop, RawPyramid, Store, open_store
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
        if (hi - lo < np.asarray(probe.shape)).any() or not raw.has_data(lv, lo, hi):
            continue  # too small, or never downloaded there (it would read as zeros)
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
                 classes: ClassMap, max_bytes: int, shape: tuple[int, ...] | None = None) -> Found | None:
    """The crop level whose composed label equals `probe` (entry label voxels from index `at`), voxel for voxel.

    A constant probe (a crop all of one class) matches every level: then only the level of the entry's whole
    `shape`, when exactly one has it, is taken.
    """
    if probe.size == 0 or not names:
        return None
    ref = crop.classes[names[0]]
    if probe.min() == probe.max():
        levels = [lv for lv in ref.levels if shape is not None and tuple(ref.shapes[lv.path]) == tuple(shape)]
        if len(levels) != 1:
            return None
    else:
        levels = ref.levels
    best: tuple[float, Found] | None = None
    for lv in levels:
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


#: Crops searched per entry when its name and provenance name none: those whose level shapes match the entry's best.
MAX_CANDIDATES = 8


@dataclass(frozen=True)
class CropBox:
    """A crop as metadata places it: store, id, outer corner (nm) and each level's (shape, voxel size)."""

    store: Path
    crop: str
    corner: tuple[float, ...]
    levels: tuple[tuple[tuple[int, ...], tuple[float, ...]], ...]

    def fit(self, shapes: Sequence[tuple[int, ...]]) -> tuple[int, int]:
        """(axes equal, -voxels off) of the level shape closest to any of `shapes`: higher is likelier."""
        return max(((sum(a == b for a, b in zip(s, shape)), -sum(abs(a - b) for a, b in zip(s, shape)))
                    for s in shapes for shape, _ in self.levels), default=(0, 0))


@dataclass(frozen=True)
class Placement:
    """Where an entry's voxels were found: a crop, and the level and voxel its image (or label) starts at."""

    store: Path
    crop: str
    found: Found
    by: str  # "image" or "label"
    corner: tuple[float, ...]

    def describe(self) -> str:
        """'crop7 of jrc_fix-1: image voxel 0 is raw s1 voxel [3, 0, 1] from the crop's corner'."""
        scale = np.asarray(self.found.scale)
        first = (np.asarray(self.found.position) - scale / 2 - np.asarray(self.corner)) / scale
        return (f"{self.crop} of {self.store.name.removesuffix('.zarr')}: its {self.by} is {self.found.describe()}, "
                f"voxel 0 at {[round(float(v), 2) + 0.0 for v in first]} voxels from the crop's corner")


def crop_boxes(store: Store, classes: ClassMap, only: Collection[str] | None = None) -> list[CropBox]:
    """The boxes of a store's crops (all, or the ids in `only`) that annotate a training class; metadata only."""
    out = []
    for crop_id in store.crop_paths:
        if only is not None and crop_id not in only:
            continue
        crop = store.open_crop(crop_id, only=classes.names)
        arrays = [crop.classes[n] for n in classes.names if n in crop.classes]
        if not arrays:
            continue
        ref = reference_array(arrays)
        corner = np.asarray(ref.finest.translation) - np.asarray(ref.finest.scale) / 2
        out.append(CropBox(store.path, crop_id, tuple(corner.tolist()),
                           tuple((ref.shapes[lv.path], tuple(lv.scale)) for lv in ref.levels)))
    return out


def place_by_content(image: np.ndarray, label: np.ndarray, at: np.ndarray, shapes: Sequence[tuple[int, ...]],
                     boxes: Sequence[CropBox], classes: ClassMap, max_bytes: int) -> Placement | None:
    """The crop whose raw levels hold the entry's image probe (or whose levels compose its label probe).

    `image`, `label`: PROBE boxes of the entry from its voxel `at`; `shapes`: the entry's image and label shapes.
    Work is bounded: the MAX_CANDIDATES crops whose level shapes come closest to the entry's (at least two
    axes equal), and per crop a window of WINDOW voxels around its corner at each raw level with chunks there.
    """
    ranked = sorted((b for b in boxes if b.fit(shapes)[0] >= 2), key=lambda b: b.fit(shapes), reverse=True)
    ranked = ranked[:MAX_CANDIDATES]
    for box in ranked:  # raw voxels first: copied exactly, they tell crops (and stores holding copies) apart
        store = open_store(box.store)
        if store.raw is not None:
            found = locate_image(image, at, store.raw, np.asarray(box.corner), max_bytes)
            if found is not None:
                return Placement(box.store, box.crop, found, "image", box.corner)
    for box in ranked:  # a blank or constant image: its label may still tell
        store = open_store(box.store)
        crop = store.open_crop(box.crop, only=classes.names)
        names = tuple(n for n in classes.names if n in crop.classes)
        found = locate_label(label, at, crop, names, names, classes, max_bytes, shapes[-1])
        if found is not None:
            return Placement(box.store, box.crop, found, "label", box.corner)
    return None
