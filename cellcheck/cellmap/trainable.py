"""Which resolution a crop trains at: resolution-mismatch, off-grid and never-downloaded raw.

26 of the field's blank crops were ground truth at a coarse scale whose finer raw levels `csc
fetch-data` never downloaded (it copies chunks only of raw levels at least 0.8x the crop's voxel
size). A converter reading them at 8 nm got black images. And a converter that pairs levels by name
misaligns the 215 of 289 crops annotated at half the raw voxel size. Both are decided here, from
metadata and chunk listings alone.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from cellcheck.cellmap.pairing import Pairing, at_resolution
from cellcheck.cellmap.stores import ClassArray, RawPyramid
from cellcheck.findings import Finding, finding
from cellcheck.grid import format_scale, same_scale

FETCH_ALL = "csc fetch-data --fetch-all-em-resolutions"


def choose(case: str, path: Path, pairings: Sequence[Pairing], raw: RawPyramid, labels: ClassArray,
           resolution: tuple[float, ...] | None) -> tuple[Pairing | None, list[Finding]]:
    """The pairing whose raw the audit reads (None: none readable), and the findings that decided it."""
    out: list[Finding] = []
    trainable = [p for p in pairings if p.trainable]
    raw_scales = [format_scale(lv.scale) for lv in raw.levels]
    if not pairings:
        out.append(finding(
            "resolution-mismatch", case, path,
            f"no level of this crop ({', '.join(format_scale(lv.scale) for lv in labels.levels)}) has a raw level of the "
            f"same voxel size (raw: {', '.join(raw_scales)}); it cannot train without resampling the raw",
            crop_scales=[list(lv.scale) for lv in labels.levels], raw_scales=[list(lv.scale) for lv in raw.levels],
            trainable=[],
        ))
        return None, out
    if not pairings[0].on_grid:
        p = pairings[0]
        out.append(finding(
            "off-grid", case, path,
            f"crop level {p.crop_level.path} ({format_scale(p.scale)}) starts at raw {p.raw_level.path} voxel "
            f"{np.round(p.offset, 3).tolist()}, {np.round(p.grid_error, 3).max():g} of a voxel off the raw grid: a label "
            "converted from it is shifted against the image. Fix the crop translation (OME-NGFF: the centre of voxel 0, "
            "corner + scale / 2)",
            offset=np.round(p.offset, 4).tolist(), level=p.crop_level.path, raw_level=p.raw_level.path,
        ))
    finest = trainable[0] if trainable else None
    names = [format_scale(p.scale) for p in trainable]
    if resolution is not None:
        target = at_resolution(pairings, resolution)
        if target is not None and target.trainable:
            return target, out
        why = _why_not(pairings, raw, labels, resolution)
        out.append(finding(
            "resolution-mismatch", case, path,
            f"crop cannot train at {format_scale(resolution)}: {why}; "
            + (f"the finest resolution it can train at is {names[0]}" if names else "it can train at no resolution"),
            resolution=list(resolution), trainable=[list(p.scale) for p in trainable],
        ))
        return finest, out
    if finest is None:
        if not any(p.has_data for p in pairings):
            out.append(finding(
                "blank-image", case, path,
                "no raw chunk exists under this crop at any resolution it pairs with "
                f"({', '.join(format_scale(p.scale) for p in pairings)}): the raw was never downloaded here; re-fetch the crop",
                trainable=[],
            ))
        return None, out
    return finest, out  # which resolutions the store's crops share is decided over all of them (checks.resolutions)


def why_not_raw(pairings: Sequence[Pairing], raw: RawPyramid, labels: ClassArray) -> str:
    """Why the crop cannot train at its raw's s0 voxel size ('' when it can): words a user can act on."""
    trainable = [p for p in pairings if p.trainable]
    if not trainable or same_scale(trainable[0].scale, raw.levels[0].scale):
        return ""
    return _why_not(pairings, raw, labels, raw.levels[0].scale)


def _why_not(pairings: Sequence[Pairing], raw: RawPyramid, labels: ClassArray, resolution: tuple[float, ...]) -> str:
    """Why the crop cannot train at `resolution`, in words a user can act on."""
    target = at_resolution(pairings, resolution)
    if target is not None:
        if not target.on_grid:
            return (f"its level {target.crop_level.path} sits {np.round(target.grid_error, 3).max():g} of a voxel off "
                    f"the raw {target.raw_level.path} grid there")
        return (f"raw {target.raw_level.path} ({format_scale(resolution)}) holds metadata but no chunks under it "
                f"(fetch-data skipped that level); re-fetch with {FETCH_ALL}")
    parts = []
    finest = labels.finest
    if not any(same_scale(lv.scale, resolution) for lv in labels.levels):
        if all(s > r for s, r in zip(finest.scale, resolution)):
            parts.append(f"it is annotated at {format_scale(finest.scale)}, coarser than that")
        else:
            parts.append(f"it has no label level at that voxel size (levels: "
                         f"{', '.join(format_scale(lv.scale) for lv in labels.levels)})")
    raw_level = raw.level_at(resolution)
    if raw_level is None:
        parts.append(f"the raw has no level at that voxel size (raw: {', '.join(format_scale(lv.scale) for lv in raw.levels)})")
    else:
        start, stop = _box_at(labels, raw_level.scale, raw_level.translation)
        if not raw.has_data(raw_level, start, stop):
            parts.append(f"raw {raw_level.path} holds no chunks under it (fetch-data skipped that level; "
                         f"{FETCH_ALL} fetches it)")
    return ", and ".join(parts) or "no pairing at that voxel size"


def _box_at(labels: ClassArray, scale: tuple[float, ...], translation: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The crop's physical box in voxels of a level with voxel size `scale` (outward-rounded)."""
    lv = labels.finest
    shape = np.asarray(labels.shape, dtype=float)
    corner = np.asarray(lv.translation) - np.asarray(lv.scale) / 2
    origin = np.asarray(translation) - np.asarray(scale) / 2
    lo = (corner - origin) / np.asarray(scale)
    hi = lo + shape * np.asarray(lv.scale) / np.asarray(scale)
    start = np.array([math.floor(v + 1e-6) for v in lo], dtype=np.int64)
    stop = np.array([math.ceil(v - 1e-6) for v in hi], dtype=np.int64)
    return start, stop
