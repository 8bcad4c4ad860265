"""A planned crop's image and label, box by box: raw voxels as stored, labels composed from class arrays.

The label of an output voxel is the training label value of the class present there (0 elsewhere),
taken from each class array's own encoding (`present`, or any object id for instance classes);
`unknown` voxels are counted per class, so the caller can leave a partly unknown class out of the
crop's annotated classes instead of training its unknown voxels as background. Levels finer than
the resolution are composed first and then reduced by the most frequent value of each block (never
averaged: label values are not quantities); coarser ones are repeated (nearest).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from cellcheck.cellmap.encoding import encoded_values
from cellcheck.cellmap.plan import CropPlan, Refused
from cellcheck.cellmap.stores import ClassArray, Crop, Store
from cellcheck.classes import ClassMap
from cellcheck.readers.ome_ngff import Level
from cellcheck.readers.zarr_volume import ZarrVolume
from cellcheck.scan import VolumeScan, byte_histogram

#: Bytes held per output voxel while rendering a box at the label level's resolution (image, label,
#: a class array and its masks), times the voxels a mode-reduced block covers.
_BYTES_PER_VOXEL = 12

#: What one class says of a voxel, whatever its array's encoding (the smallest wins a tie when reduced).
ABSENT, PRESENT, UNKNOWN = 0, 1, 255


@dataclass
class ClassCounts:
    """What one class holds over the rendered region (label-level voxels)."""

    present: int = 0
    unknown: int = 0
    voxels: int = 0

    @property
    def partly_unknown(self) -> bool:
        return 0 < self.unknown

    @property
    def annotated(self) -> bool:
        return self.unknown < self.voxels


@dataclass
class Rendered:
    """Totals over every box rendered so far."""

    counts: dict[str, ClassCounts] = field(default_factory=dict)
    conflicts: int = 0  # label-level voxels where two written classes are both present
    minimum: float = float("inf")  # of the image
    maximum: float = float("-inf")
    voxels: int = 0

    def image_scan(self, shape: tuple[int, ...], dtype) -> VolumeScan:
        """What the audit's image checks need to know about the rendered image (blank, constant)."""
        return VolumeScan(shape=shape, dtype=dtype, voxels=self.voxels, minimum=self.minimum, maximum=self.maximum)


class Renderer:
    """Render boxes of a plan's output: slabs along the last axis (NIfTI's slowest), bounded by `max_bytes`."""

    def __init__(self, plan: CropPlan, store: Store, crop: Crop, classes: ClassMap, max_bytes: int) -> None:
        self.plan, self.store, self.crop, self.classes = plan, store, crop, classes
        self.max_bytes = max_bytes
        self.totals = Rendered()

    def slab_planes(self) -> int:
        """Planes of the last axis per slab: as many as the budget allows, whole raw chunks when it can."""
        z, y, x = self.plan.shape
        per_plane = z * y * _BYTES_PER_VOXEL * math.prod(self.plan.down)
        planes = max(1, self.max_bytes // max(per_plane, 1))
        chunk_x = int(self.store.raw.group[self.plan.raw_level.path].chunks[-1])
        if planes >= chunk_x:
            planes -= planes % chunk_x
        return int(min(planes, x))

    def slabs(self, write: tuple[str, ...], image: bool = True) -> Iterator[tuple[int, np.ndarray | None, np.ndarray]]:
        """(x0, image slab or None, label slab) for the whole output, slab after slab."""
        planes = self.slab_planes()
        z, y, x = self.plan.shape
        for x0 in range(0, x, planes):
            x1 = min(x, x0 + planes)
            lo, hi = (0, 0, x0), (z, y, x1)
            yield x0, self.image(lo, hi) if image else None, self.label(lo, hi, write)

    def image(self, lo: tuple[int, ...], hi: tuple[int, ...]) -> np.ndarray:
        """Raw voxels of output box [lo, hi), as stored (uint8 for CellMap EM)."""
        p, raw = self.plan, self.store.raw
        region = tuple((s + a, s + b) for s, a, b in zip(p.start, lo, hi))
        data = ZarrVolume.level(raw.group, raw.path, p.raw_level, region).read(self.max_bytes)
        if data.size:
            t = self.totals
            t.minimum, t.maximum = min(t.minimum, float(data.min())), max(t.maximum, float(data.max()))
            t.voxels += data.size
        return data

    def label(self, lo: tuple[int, ...], hi: tuple[int, ...], write: tuple[str, ...]) -> np.ndarray:
        """Training label values of output box [lo, hi), uint8; counts every listed class's voxels into `totals`."""
        p = self.plan
        box = p.label_box(lo, hi)
        fine = compose_label(self.crop, p.classes, write, p.label_level, box, self.classes, self.max_bytes, self.totals,
                             self.plan.case)
        return to_output(fine, p, lo, hi, box)


def compose_label(crop: Crop, names: tuple[str, ...], write: tuple[str, ...], level: Level,
                  box: tuple[tuple[int, int], ...], classes: ClassMap, max_bytes: int,
                  totals: Rendered | None = None, case: str = "") -> np.ndarray:
    """Label values (uint8) of the classes in `write` over `box` of one crop level; counts `names` into `totals`.

    Raises Refused (label-values) when a semantic array holds values outside its declared encoding.
    """
    fine = np.zeros(tuple(b - a for a, b in box), dtype=np.uint8)
    for name in names:
        arr = crop.classes[name]
        data = ZarrVolume.level(arr.group, arr.path, level, box).read(max_bytes)
        present, n_present, n_unknown = _classify(case, arr, level, data, need_mask=name in write)
        if totals is not None:
            counts = totals.counts.setdefault(name, ClassCounts())
            counts.present += n_present
            counts.unknown += n_unknown
            counts.voxels += data.size
        if present is not None:
            if totals is not None:
                totals.conflicts += int(np.count_nonzero(fine[present]))  # already claimed by another class
            np.putmask(fine, present, classes.label_value[name])
    return fine


def _classify(case: str, arr: ClassArray, level: Level, data: np.ndarray,
              need_mask: bool) -> tuple[np.ndarray | None, int, int]:
    """(present mask when asked and any, present count, unknown count) of a class array, by its declared encoding.

    Raises Refused when a semantic array holds values outside its encoding (instance ids may be any integer).
    """
    enc = arr.encoding
    absent, unknown = enc.get("absent", 0), enc.get("unknown")
    if data.dtype == np.uint8:  # one histogram instead of a pass per value
        hist = byte_histogram(data.ravel(order="K"))
        count = lambda v: int(hist[v]) if v is not None and 0 <= v < 256 else 0  # noqa: E731
    else:
        count = lambda v: int(np.count_nonzero(data == v)) if v is not None else 0  # noqa: E731
    n_absent, n_unknown = count(absent), count(unknown)
    if arr.kind == "instance":
        n_present = data.size - n_absent - n_unknown
        mask = (data != absent) & (data != unknown) if need_mask and n_present else None
        return mask, n_present, n_unknown
    value = enc.get("present", 1)
    n_present = count(value)
    if n_present + n_absent + n_unknown != data.size:
        values, counts = np.unique(data, return_counts=True)
        scan = VolumeScan(shape=data.shape, dtype=data.dtype, voxels=data.size,
                          counts={int(v): int(c) for v, c in zip(values, counts)})
        raise Refused(next(iter(encoded_values(case, arr.path / level.path, scan, arr.kind, enc))))
    return (data == value if need_mask and n_present else None), n_present, n_unknown


def class_states(arr: ClassArray, data: np.ndarray) -> np.ndarray:
    """ABSENT / PRESENT / UNKNOWN (uint8) of each voxel of a class array, by its declared encoding.

    Instance arrays are present wherever they hold an object id; a value a semantic array's encoding does
    not list is not trusted either way: unknown (the audit reports it as label-values).
    """
    enc = arr.encoding
    absent, unknown = enc.get("absent", 0), enc.get("unknown")
    out = np.full(data.shape, UNKNOWN, dtype=np.uint8)
    if arr.kind == "instance":
        out[(data != absent) & (data != unknown)] = PRESENT
    else:
        out[data == enc.get("present", 1)] = PRESENT
    out[data == absent] = ABSENT
    return out


def to_output(fine: np.ndarray, plan: CropPlan, lo, hi, box) -> np.ndarray:
    """The label-level box as output voxels [lo, hi): mode-reduced, repeated, or as is."""
    if max(plan.down) > 1:
        return mode_reduce(fine, plan.down)
    if max(plan.up) > 1:
        out = fine
        for axis, u in enumerate(plan.up):
            out = np.repeat(out, u, axis=axis)
        # the repeated box starts at the label voxel holding output voxel lo: trim to [lo, hi)
        rel = [a + s - c for a, s, c in zip(lo, plan.start, plan.crop_start)]
        first = [r - b[0] * u for r, b, u in zip(rel, box, plan.up)]
        return out[tuple(slice(f, f + (b - a)) for f, a, b in zip(first, lo, hi))]
    return fine


def mode_reduce(a: np.ndarray, factor: tuple[int, ...]) -> np.ndarray:
    """Most frequent value of each `factor` block (ties: the smallest value), uint8 in, uint8 out.

    One comparison per distinct value present (a crop holds a handful), never a one-hot of the classes.
    """
    fz, fy, fx = factor
    z, y, x = (n // f for n, f in zip(a.shape, factor))
    blocks = a[: z * fz, : y * fy, : x * fx].reshape(z, fz, y, fy, x, fx)
    best = np.zeros((z, y, x), dtype=a.dtype)
    best_n = np.full((z, y, x), -1, dtype=np.int32)
    for v in np.unique(blocks):
        n = (blocks == v).sum(axis=(1, 3, 5), dtype=np.int32)
        better = n > best_n
        best[better] = v
        best_n[better] = n[better]
    return best
