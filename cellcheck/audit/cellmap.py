"""Audit of a folder of CellMap zarr stores: every ground-truth crop against its store's raw EM."""

from __future__ import annotations

import os
from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np

from cellcheck.audit.options import AuditOptions
from cellcheck.cellmap import ClassArray, Crop, Store, find_stores, open_store
from cellcheck.checks import annotations, geometry, intensity, labels, memory
from cellcheck.classes import LABEL_VALUE, NUM_CLASSES
from cellcheck.errors import CellcheckError
from cellcheck.findings import Finding, finding
from cellcheck.parallel import map_cases
from cellcheck.scan import VolumeScan, scan_volume
from cellcheck.sources.volume import ReadError
from cellcheck.sources.zarr_volume import ZarrVolume
from cellcheck.stats import CaseStats, histogram_of


def audit_crop(store: Store, crop: Crop, opts: AuditOptions = AuditOptions()) -> tuple[list[Finding], CaseStats | None]:
    """Metadata, geometry against raw, raw voxels, class voxels and the dense `all` label of one crop."""
    case = crop.id
    out = list(crop.findings)
    out += annotations.crop_class_names(case, crop.path, crop.class_names, set(crop.classes) | crop.unreadable)
    arrays = list(crop.classes.values())
    if not arrays:
        if not crop.class_names and not any(f.check == "unreadable" for f in out):
            out.append(finding("empty-annotation", case, crop.path, "crop has no annotated class; annotate it or drop it"))
        return out, None
    ref = _reference(arrays)
    out += _class_geometry(case, ref, [a for a in arrays if a is not ref] + ([crop.all] if crop.all else []))
    out += memory.oversized(case, crop.path, int(np.prod(ref.shape, dtype=np.int64)), opts.case_budget)
    stats = CaseStats(case=case, channels=frozenset(), label_counts={}, label_voxels=int(np.prod(ref.shape)),
                      image_path=str(store.raw.path) if store.raw else None, label_path=str(crop.path))
    try:
        image_scan = _raw_scan(store, crop, ref, out, opts.block_bytes)
        if image_scan is not None:
            out += intensity.image_content(case, store.raw.path, image_scan)
            stats.image_shape, stats.image_spacing = ref.shape, ref.level.scale
            stats.image_hist = histogram_of(image_scan.counts)
    except ReadError as exc:
        out.append(finding("unreadable", case, exc.path, f"raw EM: {exc.reason}"))
    annotated: set[str] = set()
    for arr in arrays:
        try:
            scan = scan_volume(ZarrVolume.level(arr.group, arr.path.parent, arr.level), max_bytes=opts.block_bytes)
        except ReadError as exc:
            out.append(finding("unreadable", case, exc.path, f"class '{arr.name}': {exc.reason}"))
            continue
        out += labels.encoded_values(case, arr.path, scan, arr.encoding)
        counts = scan.counts or {}
        out += annotations.complement_counts(case, arr.path, arr.complement_counts, counts, arr.encoding)
        unknown = counts.get(arr.encoding.get("unknown", -1), 0)
        listed = crop.class_names is None or arr.name in crop.class_names
        if listed and unknown < scan.voxels:
            annotated.add(arr.name)
            if arr.name in LABEL_VALUE:
                stats.label_counts[LABEL_VALUE[arr.name]] = int(counts.get(arr.encoding.get("present", 1), 0))
    channels = annotations.channels_of_names(annotated)
    stats.channels = channels
    # An unreadable class may well be annotated: its voxels in `all` are not evidence of a defect.
    listed = annotations.channels_of_names(annotated | (crop.unreadable & set(crop.class_names or ())))
    if not annotated and not any(f.check == "unreadable" for f in out):
        out.append(
            finding("empty-annotation", case, crop.path,
                    "no class of this crop is annotated (class_names empty or every array all 'unknown'); annotate it or drop it")
        )
    if crop.all is not None:
        try:
            scan = scan_volume(ZarrVolume.level(crop.all.group, crop.all.path.parent, crop.all.level), max_bytes=opts.block_bytes)
            out += labels.label_values(case, crop.all.path, scan, NUM_CLASSES)
            if scan.counts is not None:
                out += annotations.unannotated_present(case, crop.all.path, scan.counts, listed)
        except ReadError as exc:
            out.append(finding("unreadable", case, exc.path, f"'all' label: {exc.reason}"))
    return out, stats


def _reference(arrays: list[ClassArray]) -> ClassArray:
    """The array whose grid (shape, scale, translation) most classes share: the odd one out is the defect."""
    def grid(a: ClassArray):
        return (a.shape, tuple(np.round(a.level.scale, 6)), tuple(np.round(a.level.translation, 6)))

    votes = Counter(grid(a) for a in arrays)
    best = max(votes.values())
    return next(a for a in arrays if votes[grid(a)] == best)


def _class_geometry(case: str, ref: ClassArray, others: list[ClassArray]):
    """Every class array of a crop on the grid of the first one."""
    for arr in others:
        if arr.shape != ref.shape:
            yield finding(
                "shape-mismatch", case, arr.path,
                f"class '{arr.name}' has shape {list(arr.shape)}, class '{ref.name}' {list(ref.shape)}; re-export the crop",
                shape=list(arr.shape), reference_shape=list(ref.shape), reference=ref.name,
            )
        spacing_ok, origin_ok = geometry.same_grid(ref.level.scale, ref.level.translation, arr.level.scale, arr.level.translation)
        if not (spacing_ok and origin_ok):
            yield finding(
                "spacing-mismatch", case, arr.path,
                f"class '{arr.name}' scale {list(arr.level.scale)} / translation {list(arr.level.translation)} differ from "
                f"class '{ref.name}' ({list(ref.level.scale)} / {list(ref.level.translation)}); fix its multiscales metadata",
                scale=list(arr.level.scale), translation=list(arr.level.translation),
                reference_scale=list(ref.level.scale), reference_translation=list(ref.level.translation),
            )


def _raw_scan(store: Store, crop: Crop, ref: ClassArray, out: list[Finding], block_bytes: int) -> VolumeScan | None:
    """resolution-mismatch and out-of-bounds from metadata; then scan the raw box the crop covers."""
    raw = store.raw
    scale = ref.level.scale
    level = raw.level_at(scale) if raw else None
    if level is None:
        have = [list(lv.scale) for lv in raw.levels] if raw else []
        out.append(
            finding(
                "resolution-mismatch", crop.id, crop.path,
                f"crop is annotated at {list(scale)} nm but the raw EM has only {have or 'no levels'}; "
                "fetch the raw level at the crop's resolution (or resample the labels)",
                crop_scale=list(scale), raw_scales=have,
            )
        )
        return None
    start, stop = geometry.raw_box(ref.level, ref.shape, level)
    shape = np.asarray(raw.shapes[level.path])
    if (start < 0).any() or (stop > shape).any():
        out.append(
            finding(
                "out-of-bounds", crop.id, crop.path,
                f"crop box {start.tolist()}..{stop.tolist()} (voxels of {level.path}) extends past the raw volume "
                f"{shape.tolist()}; a converter would pad it with zeros. Fix the crop translation or fetch the missing raw",
                start=start.tolist(), stop=stop.tolist(), raw_shape=shape.tolist(), level=level.path,
            )
        )
    lo, hi = np.maximum(start, 0), np.minimum(stop, shape)
    if (hi <= lo).any():
        return None
    region = tuple((int(a), int(b)) for a, b in zip(lo, hi))
    return scan_volume(ZarrVolume.level(raw.group, raw.path, level, region), planes=True, max_bytes=block_bytes)


def audit_crop_at(ref: tuple[Path, str], opts: AuditOptions = AuditOptions()) -> tuple[list[Finding], CaseStats | None]:
    """Audit crop `ref = (store path, crop id)`; opens what it needs, so it can run in a worker process."""
    store = open_store(ref[0])
    return audit_crop(store, store.open_crop(ref[1]), opts)


def audit_cellmap(root: Path, opts: AuditOptions = AuditOptions()) -> tuple[list[Finding], int, list[CaseStats]]:
    """All findings of every crop of every store under `root`."""
    findings: list[Finding] = []
    refs: list[tuple[Path, str]] = []
    open_store.cache_clear()  # forked workers inherit what is opened below; nothing older
    for path in find_stores_or_fail(root):
        try:
            store = open_store(path)
        except ReadError as exc:
            findings.append(finding("unreadable", None, path, exc.reason))
            continue
        findings += store.findings
        refs += [(path, crop_id) for crop_id in store.crop_paths]
    if not refs and findings:
        raise CellcheckError(f"{root}: no readable zarr store ({findings[0].message})")
    stats: list[CaseStats] = []
    for found, s in map_cases(partial(audit_crop_at, opts=opts), refs, opts.jobs, opts.progress, "crops"):
        findings += found
        if s is not None:
            stats.append(s)
    for f in findings:  # name files relative to the folder the user gave
        if f.path and Path(f.path).is_relative_to(root):
            f.path = str(Path(f.path).relative_to(root))
    return findings, len(refs), stats


def find_stores_or_fail(root: Path) -> list[Path]:
    if not os.access(root, os.R_OK | os.X_OK):
        raise CellcheckError(f"{root}: permission denied; fix: make the folder readable")
    stores = find_stores(root)
    if not stores:
        raise CellcheckError(
            f"{root}: no CellMap zarr stores (*.zarr) found; pass a folder of stores or a datalist JSON file"
        )
    return stores
