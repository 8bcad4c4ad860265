"""Any box of a crop at its plan's resolution: the raw image, and per class what is present and what is known.

The one way the trainer (and `cellcheck infer`) reads CellMap data. A box is given in voxels of the
training resolution relative to the crop's first voxel, and may reach past the crop: the image then
holds the raw around it (real context where raw chunks exist; zeros past the raw volume), while the
labels there are unknown. Inside the crop a class is unknown where its own array says so (`unknown`
in its encoding), and everywhere when the crop does not annotate it. Only the chunks the box overlaps
are read; nothing holds a whole crop.

Targets travel packed: bit `c % 8` of byte `c // 8` is class c (channel c of the class map), one
array for "present" and one for "known", `ceil(C / 8)` bytes per voxel each, so a patch of 14 classes
costs 4 bytes per voxel beside its image, never a (C, Z, Y, X) byte or float tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Collection, Sequence

import numpy as np

from cellcheck.cellmap.plan import CropPlan
from cellcheck.cellmap.render import ABSENT, PRESENT, UNKNOWN, class_states, to_output
from cellcheck.cellmap.stores import Crop, Store
from cellcheck.classes import ClassMap
from cellcheck.errors import CellcheckError
from cellcheck.grid import format_scale
from cellcheck.readers.ome_ngff import Level
from cellcheck.readers.zarr_compat import read_regions
from cellcheck.readers.zarr_volume import open_level, read_region

Box = tuple[tuple[int, ...], tuple[int, ...]]


def packed_bytes(num_classes: int) -> int:
    """Bytes per voxel of one packed mask of `num_classes` classes."""
    return math.ceil(num_classes / 8)


@dataclass(frozen=True)
class CropBox:
    """One box of a crop: `image` (Z, Y, X) as stored; `present`, `known` (ceil(C/8), Z, Y, X) uint8 bit masks."""

    image: np.ndarray
    present: np.ndarray
    known: np.ndarray

    def unpacked(self, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """(C, Z, Y, X) bool present and known: for tests and small boxes, never on the training path."""
        def unpack(a: np.ndarray) -> np.ndarray:
            return np.unpackbits(a, axis=0, count=num_classes, bitorder="little").astype(bool)

        return unpack(self.present), unpack(self.known)


class CropReader:
    """Reads boxes of one planned crop (open the store in the process that reads: zarr objects do not fork well).

    `trained`: the classes this crop is trained for (default: every class of the map it annotates); any
    other class of the map is unknown everywhere in it.
    """

    def __init__(self, plan: CropPlan, store: Store, crop: Crop, classes: ClassMap,
                 trained: Collection[str] | None = None) -> None:
        self.plan, self.store, self.crop, self.classes = plan, store, crop, classes
        self.nbytes = packed_bytes(len(classes))
        self.trained = frozenset(plan.classes if trained is None else set(trained) & set(plan.classes))
        self._raw = RawReader(store, plan.raw_level)
        self._arrays: dict[str, object] = {}  # each class's array at the label level, opened once

    @property
    def shape(self) -> tuple[int, ...]:
        """The crop's whole box at the training resolution (voxels), past-the-raw parts included."""
        return tuple(b - a for a, b in zip(self.plan.crop_start, self.plan.crop_stop))

    @property
    def labelled(self) -> Box:
        """The part of the crop's box that has raw under it (relative to the crop's first voxel)."""
        p = self.plan
        return (tuple(s - c for s, c in zip(p.start, p.crop_start)), tuple(e - c for e, c in zip(p.stop, p.crop_start)))

    def read(self, lo: tuple[int, ...], hi: tuple[int, ...], image: bool = True) -> CropBox:
        """Voxels [lo, hi) of the crop's box (any integers: the box may reach past the crop and the raw).

        The raw box and every trained class's box are read in one call to the store (`read_regions`).
        """
        shape = tuple(int(b - a) for a, b in zip(lo, hi))
        present = np.zeros((self.nbytes, *shape), dtype=np.uint8)
        known = np.zeros_like(present)
        requests, places = [], []
        pix = np.zeros(shape if image else (0, 0, 0), dtype=self._raw.dtype)
        if image:
            start = tuple(s + a for s, a in zip(self.plan.crop_start, lo))
            placed = self._raw.request(start, tuple(s + n for s, n in zip(start, shape)))
            if placed is not None:
                requests.append(placed[0])
                places.append(("image", placed[1], None))
        inner = _intersect((tuple(lo), tuple(hi)), self.labelled)
        if inner is not None:
            at = tuple(slice(a - o, b - o) for a, b, o in zip(inner[0], inner[1], lo))
            for channel, name in enumerate(self.classes.names):
                if name in self.trained:  # any other class is unknown everywhere in this crop
                    request, where = self._class_request(name, *inner)
                    requests.append(request)
                    places.append((name, at, (channel, where)))
        for data, (what, at, extra) in zip(read_regions(requests), places):
            if what == "image":
                pix[at] = data
                continue
            channel, (arr, out_lo, out_hi, box) = extra
            states = to_output(class_states(arr, np.asarray(data)), self.plan, out_lo, out_hi, box)
            byte, bit = divmod(channel, 8)
            present[(byte, *at)] |= (states == PRESENT).view(np.uint8) << bit
            known[(byte, *at)] |= (states != UNKNOWN).view(np.uint8) << bit
        return CropBox(pix, present, known)

    def _class_request(self, name: str, lo: tuple[int, ...], hi: tuple[int, ...]):
        """The read of one class over [lo, hi) (crop-box voxels) at the label level, and how to resample it."""
        p = self.plan
        arr = self.crop.classes[name]
        shift = tuple(s - c for s, c in zip(p.start, p.crop_start))  # crop-box -> plan output coordinates
        out_lo = tuple(a - s for a, s in zip(lo, shift))
        out_hi = tuple(b - s for b, s in zip(hi, shift))
        box = p.label_box(out_lo, out_hi)
        level = self._arrays.get(name)
        if level is None:
            level = self._arrays[name] = open_level(arr.group, arr.path, p.label_level)
        return (level, tuple(slice(a, b) for a, b in box)), (arr, out_lo, out_hi, box)


class RawReader:
    """Boxes of one raw level of a store, anywhere: zeros where a box leaves the raw volume (`cellcheck infer --box`)."""

    def __init__(self, store: Store, level: Level) -> None:
        self.store, self.level = store, level
        self.shape = store.raw.shapes[level.path]
        self._array = open_level(store.raw.group, store.raw.path, level)

    @classmethod
    def at(cls, store: Store, resolution: Sequence[float]) -> "RawReader":
        """The raw level with this voxel size (nm); CellcheckError when the pyramid has none."""
        level = store.raw.level_at(tuple(resolution)) if store.raw is not None else None
        if level is None:
            have = ", ".join(format_scale(lv.scale) for lv in store.raw.levels) if store.raw is not None else "none"
            raise CellcheckError(f"{store.path}: the raw EM has no level at {format_scale(resolution)} (levels: {have}); "
                                 "read it at one of those")
        return cls(store, level)

    def voxels(self, lo_nm: Sequence[float], hi_nm: Sequence[float]) -> Box:
        """The voxels [start, stop) whose centres lie in the physical box [lo_nm, hi_nm) (z y x)."""
        scale, origin = np.asarray(self.level.scale), np.asarray(self.level.translation)
        start = np.ceil((np.asarray(lo_nm) - origin) / scale - 1e-6).astype(int)
        stop = np.ceil((np.asarray(hi_nm) - origin) / scale - 1e-6).astype(int)
        return tuple(int(v) for v in start), tuple(int(v) for v in stop)

    def centre(self, start: Sequence[int]) -> tuple[float, ...]:
        """World position (nm) of the centre of voxel `start`."""
        return tuple(float(t + s * i) for t, s, i in zip(self.level.translation, self.level.scale, start))

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._array.dtype)

    def request(self, start: Sequence[int], stop: Sequence[int]):
        """((array, selection), where it goes in the box) for the part of [start, stop) inside the volume, or None."""
        inside = _intersect((tuple(start), tuple(stop)), ((0,) * len(self.shape), self.shape))
        if inside is None:
            return None
        at = tuple(slice(int(a - s), int(b - s)) for a, b, s in zip(inside[0], inside[1], start))
        return (self._array, tuple(slice(int(a), int(b)) for a, b in zip(*inside))), at

    def read(self, start: Sequence[int], stop: Sequence[int]) -> np.ndarray:
        """Voxels [start, stop) of the level; zeros past the volume (unwritten chunks read as their fill value)."""
        out = np.zeros(tuple(int(b - a) for a, b in zip(start, stop)), dtype=self.dtype)
        placed = self.request(start, stop)
        if placed is not None:
            (array, selection), at = placed
            out[at] = read_region(array, self.store.raw.path / self.level.path, tuple((s.start, s.stop) for s in selection))
        return out


def _intersect(a: Box, b: Box) -> Box | None:
    lo = tuple(max(int(x), int(y)) for x, y in zip(a[0], b[0]))
    hi = tuple(min(int(x), int(y)) for x, y in zip(a[1], b[1]))
    return None if any(h <= l for l, h in zip(lo, hi)) else (lo, hi)


__all__ = ["ABSENT", "PRESENT", "UNKNOWN", "CropBox", "CropReader", "RawReader", "packed_bytes"]
