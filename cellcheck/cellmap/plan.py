"""How one crop is read at one resolution (by convert, the conversion check and the store loader), decided from metadata alone.

A crop reads at resolution R when a label level of the crop and a raw level pair there (equal voxel
size, the crop on the raw grid, raw chunks under it), or when the crop has a finer level whose voxel
size divides R (labels then downsampled by mode), or, only on request, a coarser one (labels
upsampled by nearest). Everything else is refused with the audit's own message
(`cellcheck.cellmap.trainable`), before a voxel is read: crop247's 1.2e9 voxels included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cellcheck.cellmap import trainable
from cellcheck.cellmap.geometry import class_geometry, reference_array
from cellcheck.cellmap.pairing import GRID_TOLERANCE, at_resolution, pair_levels
from cellcheck.cellmap.stores import ClassArray, Crop, RawPyramid, Store
from cellcheck.classes import ClassMap
from cellcheck.findings import Finding, finding
from cellcheck.grid import format_scale
from cellcheck.readers.ome_ngff import Level
from cellcheck.readers.zarr_volume import ZarrVolume


class Refused(Exception):
    """A crop that does not convert: the finding that says why (an audit check id and its message)."""

    def __init__(self, found: Finding) -> None:
        super().__init__(found.message)
        self.finding = found


@dataclass(frozen=True)
class PlanOptions:
    """How crops are read: voxel size (nm, z y x), training classes, and whether coarser labels may be repeated."""

    resolution: tuple[float, ...]
    classes: ClassMap
    upsample: bool = False


@dataclass(frozen=True)
class CropPlan:
    """One crop at one resolution: which levels are read, and the output box in raw-level voxels.

    `down` (label-level voxels per output voxel) or `up` (output voxels per label-level voxel) is
    (1, 1, 1) when the crop has a level at the resolution. `crop_start`/`crop_stop` is the crop's box;
    `start`/`stop` the part inside the raw volume (the output).
    """

    case: str
    store: Path
    crop: str
    classes: tuple[str, ...]  # class arrays the label may use: listed, readable, in the class map
    label_level: Level
    down: tuple[int, ...]
    up: tuple[int, ...]
    raw_level: Level
    crop_start: tuple[int, ...]
    crop_stop: tuple[int, ...]
    start: tuple[int, ...]
    stop: tuple[int, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(b - a for a, b in zip(self.start, self.stop))

    @property
    def voxels(self) -> int:
        return math.prod(self.shape)

    @property
    def spacing(self) -> tuple[float, ...]:
        return self.raw_level.scale

    @property
    def origin(self) -> tuple[float, ...]:
        """Centre of output voxel 0 (nm)."""
        return tuple(t + s * a for t, s, a in zip(self.raw_level.translation, self.raw_level.scale, self.start))

    @property
    def clipped(self) -> dict[str, list[int]]:
        """Voxels cut off at each side (past the raw volume), {} when none."""
        before = [a - c for a, c in zip(self.start, self.crop_start)]
        after = [c - b for b, c in zip(self.stop, self.crop_stop)]
        return {"before": before, "after": after} if any(before) or any(after) else {}

    def label_box(self, lo: tuple[int, ...], hi: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
        """Region of the label level under output voxels [lo, hi) (output-box coordinates)."""
        out = []
        for a, b, s0, c0, d, u in zip(lo, hi, self.start, self.crop_start, self.down, self.up):
            rel_a, rel_b = a + s0 - c0, b + s0 - c0
            out.append((rel_a * d // u, -(-rel_b * d // u)))
        return tuple(out)

    def describe(self) -> dict:
        """The levels used, for the provenance record."""
        return {
            "label_level": self.label_level.path, "label_scale": list(self.label_level.scale),
            "label_translation": list(self.label_level.translation),
            "resample": "mode" if max(self.down) > 1 else "nearest" if max(self.up) > 1 else None,
            "factor": list(self.down) if max(self.down) > 1 else list(self.up),
            "raw_level": self.raw_level.path, "raw_scale": list(self.raw_level.scale),
            "raw_box": [list(self.start), list(self.stop)], "crop_box": [list(self.crop_start), list(self.crop_stop)],
            "clipped": self.clipped,
        }


def plan_crop(case: str, store: Store, crop: Crop, opts: PlanOptions) -> CropPlan:
    """The conversion plan of one crop, or Refused (with the audit's finding) when it cannot convert."""
    if store.raw is None:
        raise Refused(finding("unreadable", case, store.path, "the store has no readable raw EM; re-download it"))
    broken = [f for f in crop.findings if f.check in ("unreadable", "mixed-zarr-format")]
    if broken and not crop.classes:
        raise Refused(broken[0])
    wanted = [n for n in opts.classes.names if crop.class_names is None or n in crop.class_names]
    unreadable = sorted(set(wanted) & crop.unreadable)
    if unreadable:
        raise Refused(next(f for f in crop.findings if f.check == "unreadable" and Path(str(f.path)).name in unreadable))
    arrays = [crop.classes[n] for n in wanted if n in crop.classes]
    if not arrays:
        listed = ", ".join(crop.class_names or sorted(crop.classes)) or "nothing"
        raise Refused(finding("empty-annotation", case, crop.path,
                              f"crop annotates none of the training classes (it lists {listed}); nothing to learn from it"))
    ref = reference_array(arrays)
    grid = list(class_geometry(case, ref, [a for a in arrays if a is not ref]))
    if grid:
        raise Refused(grid[0])
    raw = store.raw
    pairings = pair_levels(ref, raw)
    _, found = trainable.choose(case, crop.path, pairings, raw, ref, opts.resolution)
    errors = [f for f in found if f.severity.value == "error"]
    target = at_resolution(pairings, opts.resolution)  # (off the grid at another level matters only there)
    if target is not None and not target.on_grid:
        off = [f for f in errors if f.check == "off-grid" and f.details.get("level") == target.crop_level.path]
        raise Refused((off or errors)[0])
    if target is not None and target.trainable:
        level, down, up, raw_level = target.crop_level, (1,) * 3, (1,) * 3, target.raw_level
        crop_start, crop_stop = target.start, target.stop
    else:
        level, down, up, raw_level, crop_start, crop_stop = _resampled(case, crop, ref, raw, opts, errors)
    return _clip(case, store, crop, ref, level, down, up, raw_level, crop_start, crop_stop, arrays)


def _resampled(case: str, crop: Crop, ref: ClassArray, raw: RawPyramid, opts: PlanOptions, errors: list[Finding]):
    """A crop without a label level at the resolution: mode-downsample a finer level (or upsample a coarser one)."""
    mismatch = [f for f in errors if f.check == "resolution-mismatch"]  # why not at this resolution, in the audit's words
    first = (mismatch or errors or [finding("resolution-mismatch", case, crop.path,
                                            f"crop cannot train at {format_scale(opts.resolution)}")])[0]
    raw_level = raw.level_at(opts.resolution)
    if raw_level is None or any(_ratio(opts.resolution, lv.scale) == (1, 1, 1) for lv in ref.levels):
        raise Refused(first)  # no raw there, or a level there that is off the grid or has no raw chunks
    finer = [(lv, r) for lv in ref.levels if (r := _ratio(opts.resolution, lv.scale)) is not None]
    coarser = [(lv, r) for lv in ref.levels if (r := _ratio(lv.scale, opts.resolution)) is not None]
    if finer:
        level, down = max(finer, key=lambda t: math.prod(t[0].scale))  # the closest: least to resample
        up = (1, 1, 1)
        shape = tuple(n // d for n, d in zip(ref.shapes[level.path], down))
    elif coarser:
        level, up = min(coarser, key=lambda t: math.prod(t[0].scale))
        down = (1, 1, 1)
        shape = tuple(n * u for n, u in zip(ref.shapes[level.path], up))
    else:
        raise Refused(first)
    corner = np.asarray(level.translation) - np.asarray(level.scale) / 2
    offset = (corner + np.asarray(opts.resolution) / 2 - np.asarray(raw_level.translation)) / np.asarray(opts.resolution)
    error = np.abs(offset - np.rint(offset))
    if (error > GRID_TOLERANCE).any():
        raise Refused(finding(
            "off-grid", case, crop.path,
            f"crop level {level.path} ({format_scale(level.scale)}) resampled to {format_scale(opts.resolution)} starts at "
            f"raw {raw_level.path} voxel {np.round(offset, 3).tolist()}, {error.max():.3g} of a voxel off the raw grid; "
            "it cannot be converted there without shifting its labels",
            offset=np.round(offset, 4).tolist(), level=level.path, raw_level=raw_level.path,
        ))
    start = np.rint(offset).astype(np.int64)
    stop = start + np.asarray(shape, dtype=np.int64)
    if not raw.has_data(raw_level, start, stop):
        raise Refused(first)
    if max(up) > 1 and not opts.upsample:
        raise Refused(finding(first.check, case, first.path, f"{first.message}; pass --upsample-labels to convert it "
                              "by repeating its label voxels (nearest), the raw being there", **first.details))
    return level, down, up, raw_level, tuple(int(v) for v in start), tuple(int(v) for v in stop)


def _ratio(big: tuple[float, ...], small: tuple[float, ...]) -> tuple[int, ...] | None:
    """big / small per axis when every ratio is a whole number >= 1 (within 0.1 %), else None."""
    out = []
    for b, s in zip(big, small):
        r = b / s
        k = round(r)
        if k < 1 or abs(r - k) > 1e-3 * k:
            return None
        out.append(k)
    return tuple(out)


def _clip(case, store, crop, ref, level, down, up, raw_level, crop_start, crop_stop, arrays) -> CropPlan:
    """The plan, its box clipped to the raw volume (the part past it is dropped, never zero-padded)."""
    raw = store.raw
    shape = np.asarray(raw.shapes[raw_level.path])
    start = np.maximum(np.asarray(crop_start), 0)
    stop = np.minimum(np.asarray(crop_stop), shape)
    if (stop <= start).any():
        raise Refused(finding(
            "out-of-bounds", case, raw.path / raw_level.path,
            f"crop box {list(crop_start)}..{list(crop_stop)} (voxels of raw {raw_level.path}) lies entirely outside the "
            f"raw volume {shape.tolist()}; fix the crop translation or fetch the raw it sits on",
        ))
    region = tuple((int(a), int(b)) for a, b in zip(start, stop))
    volume = ZarrVolume.level(raw.group, raw.path, raw_level, region)
    missing = volume.missing_chunks()
    if missing:
        raise Refused(finding(
            "partial-blank", case, raw.path / raw_level.path,
            f"raw {raw_level.path} lacks {missing} chunk(s) under the crop (an interrupted or partial download): they "
            "would read as zeros; re-fetch the crop",
            missing_chunks=missing,
        ))
    return CropPlan(
        case=case, store=store.path, crop=crop.id, classes=tuple(a.name for a in arrays), label_level=level,
        down=tuple(down), up=tuple(up), raw_level=raw_level,
        crop_start=tuple(int(v) for v in crop_start), crop_stop=tuple(int(v) for v in crop_stop),
        start=tuple(int(v) for v in start), stop=tuple(int(v) for v in stop),
    )
