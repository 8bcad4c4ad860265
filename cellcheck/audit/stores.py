"""Audit of a folder of CellMap zarr stores: every ground-truth crop against its store's raw EM.

Crop and raw levels pair by voxel size (cellcheck.cellmap.pairing), each class array is checked against its
own declared encoding, `all` against CellMap's canonical class ids, and the raw is read at the
resolution the crop trains at: `--resolution` when given, else the finest one it can.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from cellcheck.audit.options import AuditOptions
from cellcheck.cellmap import encoding, trainable
from cellcheck.cellmap.geometry import class_geometry, reference_array
from cellcheck.cellmap.pairing import Pairing, pair_levels
from cellcheck.cellmap.stores import ClassArray, Crop, Store, find_stores_or_fail, open_store
from cellcheck.checks import annotations, case_size, image_content
from cellcheck.checks.resolutions import CropResolutions, store_summary
from cellcheck.errors import CellcheckError
from cellcheck.findings import Finding, finding
from cellcheck.grid import same_scale
from cellcheck.parallel import map_cases
from cellcheck.readers.volume import ReadError
from cellcheck.readers.zarr_volume import ZarrVolume
from cellcheck.scan import VolumeScan, scan_volume
from cellcheck.stats import CaseStats, histogram_of


def audit_crop(store: Store, crop: Crop, opts: AuditOptions = AuditOptions()
               ) -> tuple[list[Finding], CaseStats | None, CropResolutions | None]:
    """Metadata, geometry against raw, raw voxels, class voxels and the dense `all` label of one crop.

    Also the resolutions it trains at (for the store's summary, without --resolution).
    """
    case = crop.id
    out = list(crop.findings)
    out += annotations.crop_class_names(case, crop.path, crop.class_names, set(crop.classes) | crop.unreadable)
    arrays = list(crop.classes.values())
    if not arrays:
        if not crop.class_names and not any(f.check == "unreadable" for f in out):
            out.append(finding("empty-annotation", case, crop.path, "crop has no annotated class; annotate it or drop it"))
        return out, None, None
    ref = reference_array(arrays)
    out += class_geometry(case, ref, [a for a in arrays if a is not ref] + ([crop.all] if crop.all else []))
    out += case_size.oversized(case, crop.path, int(np.prod(ref.shape, dtype=np.int64)), opts.case_budget)
    stats = CaseStats(case=case, channels=frozenset(), label_counts={}, label_voxels=int(np.prod(ref.shape)),
                      image_path=str(store.raw.path) if store.raw else None, label_path=str(crop.path))
    chosen, resolutions = None, None
    if store.raw is not None:
        pairings = pair_levels(ref, store.raw)
        stats.resolutions = [list(p.scale) for p in pairings if p.trainable]
        chosen, found = trainable.choose(case, crop.path, pairings, store.raw, ref, opts.resolution)
        out += found
        resolutions = CropResolutions(case, crop.path, tuple(p.scale for p in pairings if p.trainable),
                                      store.raw.levels[0].scale, trainable.why_not_raw(pairings, store.raw, ref))
        if chosen is not None:
            try:
                image_scan = _raw_scan(store, case, chosen, out, opts.block_bytes)
                if image_scan is not None:
                    out += image_content.image_content(case, store.raw.path / chosen.raw_level.path, image_scan)
                    stats.image_shape, stats.image_spacing = chosen.crop_shape, chosen.scale
                    stats.image_hist = histogram_of(image_scan.counts)
            except ReadError as exc:
                out.append(finding("unreadable", case, exc.path, f"raw EM: {exc.reason}"))
    # statistics at the resolution training runs at (--resolution), else at the annotation's own
    at_resolution = chosen is not None and opts.resolution is not None and same_scale(chosen.scale, opts.resolution)
    stats_scale = chosen.scale if at_resolution else None
    if opts.resolution and stats_scale is None:
        stats.label_counts = None  # the crop cannot train there: it adds nothing to that training's statistics
    annotated = _class_voxels(case, crop, arrays, stats, out, opts, stats_scale)
    stats.channels = opts.classes.channels_of(annotated)
    if not annotated and not any(f.check == "unreadable" for f in out):
        out.append(
            finding("empty-annotation", case, crop.path,
                    "no class of this crop is annotated (class_names empty or every array all 'unknown'); annotate it or drop it")
        )
    if crop.all is not None:
        # An unreadable class may well be annotated: its voxels in `all` are not evidence of a defect.
        listed = annotated | (crop.unreadable & set(crop.class_names or ()))
        try:
            scan = scan_volume(ZarrVolume.level(crop.all.group, crop.all.path, crop.all.finest), max_bytes=opts.block_bytes)
            out += encoding.canonical_values(case, crop.all.array_path, scan)
            if scan.counts is not None:
                out += annotations.unannotated_canonical(case, crop.all.array_path, scan.counts, listed)
        except ReadError as exc:
            out.append(finding("unreadable", case, exc.path, f"'all' label: {exc.reason}"))
    return out, stats, resolutions


def _class_voxels(case: str, crop: Crop, arrays: list[ClassArray], stats: CaseStats, out: list[Finding],
                  opts: AuditOptions, stats_scale: tuple[float, ...] | None) -> set[str]:
    """Scan every class array at its finest level: encoding, complement counts, what is annotated and present.

    Voxel counts for the statistics come from the level at `stats_scale` when given (the training resolution).
    """
    annotated: set[str] = set()
    label_value = opts.classes.label_value
    for arr in arrays:
        try:
            scan = scan_volume(ZarrVolume.level(arr.group, arr.path, arr.finest), max_bytes=opts.block_bytes)
        except ReadError as exc:
            out.append(finding("unreadable", case, exc.path, f"class '{arr.name}': {exc.reason}"))
            continue
        out += encoding.encoded_values(case, arr.array_path, scan, arr.kind, arr.encoding)
        counts = scan.counts or {}
        out += annotations.complement_counts(case, arr.array_path, arr.complement_counts, counts, arr.encoding,
                                               arr.name)
        unknown = counts.get(arr.encoding.get("unknown", -1), 0)
        listed = crop.class_names is None or arr.name in crop.class_names
        if not listed or unknown >= scan.voxels:
            continue
        annotated.add(arr.name)
        if arr.name not in label_value or stats.label_counts is None:
            continue
        level = next((lv for lv in arr.levels if stats_scale and same_scale(lv.scale, stats_scale)), arr.finest)
        if level is not arr.finest:
            try:
                scan = scan_volume(ZarrVolume.level(arr.group, arr.path, level), max_bytes=opts.block_bytes)
            except ReadError as exc:
                out.append(finding("unreadable", case, exc.path, f"class '{arr.name}': {exc.reason}"))
                continue
            counts = scan.counts or {}
            stats.label_voxels = scan.voxels
        absent = counts.get(arr.encoding.get("absent", 0), 0)
        stats.label_counts[label_value[arr.name]] = int(scan.voxels - absent - counts.get(arr.encoding.get("unknown", -1), 0))
    return annotated


def _raw_scan(store: Store, case: str, p: Pairing, out: list[Finding], block_bytes: int) -> VolumeScan | None:
    """out-of-bounds from metadata, then one pass over the raw box the crop covers at the chosen level."""
    raw = store.raw
    shape = np.asarray(p.raw_shape)
    start, stop = p.start, p.stop
    if not p.in_bounds:
        out.append(
            finding(
                "out-of-bounds", case, raw.path / p.raw_level.path,
                f"crop box {start.tolist()}..{stop.tolist()} (voxels of raw {p.raw_level.path}) extends past the raw "
                f"volume {shape.tolist()}; a converter must clip it and mark the rest unknown, not pad it with zeros",
                start=start.tolist(), stop=stop.tolist(), raw_shape=shape.tolist(), level=p.raw_level.path,
            )
        )
    lo, hi = np.maximum(start, 0), np.minimum(stop, shape)
    if (hi <= lo).any():
        return None
    region = tuple((int(a), int(b)) for a, b in zip(lo, hi))
    return scan_volume(ZarrVolume.level(raw.group, raw.path, p.raw_level, region), planes=True, max_bytes=block_bytes)


def audit_crop_at(ref: tuple[Path, str], opts: AuditOptions = AuditOptions()
                  ) -> tuple[list[Finding], CaseStats | None, CropResolutions | None]:
    """Audit crop `ref = (store path, crop id)`; opens what it needs, so it can run in a worker process."""
    store = open_store(ref[0])
    return audit_crop(store, store.open_crop(ref[1]), opts)


def audit_cellmap(root: Path, opts: AuditOptions = AuditOptions()) -> tuple[list[Finding], list[str], list[CaseStats]]:
    """All findings of every crop of every store under `root`, every crop by id, per-crop statistics."""
    findings: list[Finding] = []
    refs: list[tuple[Path, str]] = []
    foreign: list[str] = []  # crops on disk that the store's reader cannot see (mixed-zarr-format, metadata lost)
    open_store.cache_clear()  # forked workers inherit what is opened below; nothing older
    for path in find_stores_or_fail(root):
        try:
            store = open_store(path)
        except ReadError as exc:
            findings.append(finding("unreadable", None, path, exc.reason))
            continue
        findings += store.findings
        refs += [(path, crop_id) for crop_id in store.crop_paths]
        foreign += store.foreign_crops
    if not refs and findings:
        raise CellcheckError(f"{root}: no readable zarr store ({findings[0].message})")
    stats: list[CaseStats] = []
    per_store: dict[Path, list[CropResolutions]] = {}
    for ref, (found, s, res) in zip(refs, map_cases(partial(audit_crop_at, opts=opts), refs, opts.jobs, opts.progress,
                                                    "crops")):
        findings += found
        if s is not None:
            stats.append(s)
        if res is not None:
            per_store.setdefault(ref[0], []).append(res)
    if opts.resolution is None:
        for path, crops in per_store.items():
            findings += store_summary(path.name.removesuffix(".zarr"), path, crops)
    for f in findings:  # name files relative to the folder the user gave
        if f.path and Path(f.path).is_relative_to(root):
            f.path = str(Path(f.path).relative_to(root))
    return findings, [crop for _, crop in refs] + foreign, stats
