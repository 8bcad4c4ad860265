"""Audit of a MONAI datalist: each entry's files, headers and voxels, then the datalist as a whole."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from cellcheck.audit import crop_index
from cellcheck.audit.crop_index import SourceResult, Sources
from cellcheck.audit.options import AuditOptions
from cellcheck.boundaries import PairSteps
from cellcheck.checks import (annotations, case_size, contrast, conversion, finite, folds, geometry, image_content, labels,
                             stale_stats)
from cellcheck.datalist import Datalist, Entry, load_datalist
from cellcheck.findings import Finding, finding
from cellcheck.parallel import map_cases
from cellcheck.readers import Volume, open_volume
from cellcheck.readers.volume import ReadError
from cellcheck.scan import VolumeScan, scan_pair, scan_volume
from cellcheck.stats import CaseStats, compact_joint, histogram_of


@dataclass
class EntryResult:
    findings: list[Finding] = field(default_factory=list)
    stats: CaseStats | None = None
    channels: frozenset[int] | None = None
    source: SourceResult | None = None  # with --source: how the entry was placed against its crop


def audit_entry(entry: Entry, datalist: Datalist, opts: AuditOptions = AuditOptions(),
                sources: Sources | None = None) -> EntryResult:
    """Every per-case check of one entry: annotations, files, headers (cheap) before voxels; then its source crop."""
    out = EntryResult()
    case, where = entry.case, datalist.path
    channels: frozenset[int] | None = None  # None: the entry says nothing, i.e. fully annotated
    if entry.has_annotated_classes:
        parsed, found = annotations.annotated_classes(case, where, entry.annotated_classes, len(opts.classes))
        out.findings += found
        channels = parsed.channels if parsed.channels is not None else frozenset()
        out.channels = parsed.channels
    elif entry.valid:
        out.channels = frozenset(range(len(opts.classes)))
    if not entry.valid:
        return out
    # Findings name files as the datalist writes them (relative to the data root).
    shown = {"image": entry.image, "label": entry.label}
    volumes: dict[str, Volume] = {}
    for role, rel in shown.items():
        volume = _open(role, rel, datalist, entry, out.findings)
        if volume is not None:
            volumes[role] = volume
    image, label = volumes.get("image"), volumes.get("label")
    if image and label:
        out.findings += geometry.image_label_pair(case, image.header, label.header, shown["label"])
    if image:
        out.findings += case_size.oversized(case, shown["image"], image.header.voxels, opts.case_budget)

    scans, joint, steps = _scan(volumes, opts.block_bytes, case, shown, out.findings)
    stats = CaseStats(case=case, channels=channels, joint=compact_joint(joint), image_path=str(datalist.resolve(entry.image)),
                      label_path=str(datalist.resolve(entry.label)), boundaries=steps)
    if "image" in scans:
        scan = scans["image"]
        out.findings += image_content.image_content(case, shown["image"], scan)
        out.findings += finite.non_finite(case, shown["image"], scan, "image")
        stats.image_shape, stats.image_spacing = image.header.shape, image.header.spacing
        stats.image_moments = (scan.finite, scan.total, scan.total_sq)
        stats.image_hist = histogram_of(scan.counts)
    if "label" in scans:
        scan = scans["label"]
        out.findings += labels.label_values(case, shown["label"], scan, len(opts.classes))
        out.findings += finite.non_finite(case, shown["label"], scan, "label")
        if scan.counts is not None:
            stats.label_counts, stats.label_voxels = scan.counts, scan.voxels
            if channels:
                out.findings += annotations.unannotated_present(case, shown["label"], scan.counts, channels, opts.classes)
    out.stats = stats
    if sources is not None and image and label:
        names = None if out.channels is None else [opts.classes.names[c] for c in sorted(out.channels)]
        out.source = sources.check(case, shown, image, label, names, opts.classes, opts.block_bytes)
        out.findings += out.source.findings
    return out


def _open(role: str, rel: str, datalist: Datalist, entry: Entry, findings: list[Finding]) -> Volume | None:
    p = datalist.resolve(rel)
    try:
        exists = p.exists()
    except PermissionError:
        findings.append(finding("unreadable", entry.case, rel, f"{role}: permission denied on a folder above it"))
        return None
    if not exists:
        findings.append(
            finding("missing-file", entry.case, rel, f"{role} file does not exist; fix the path in {entry.where} or fetch it")
        )
        return None
    try:
        return open_volume(p)
    except ReadError as exc:
        findings.append(finding("unreadable", entry.case, rel, f"{role}: {exc.reason}"))
        return None


def _scan(volumes: dict[str, Volume], block_bytes: int, case: str, shown: dict[str, str],
          findings: list[Finding]) -> tuple[dict[str, VolumeScan], np.ndarray | None, PairSteps | None]:
    """Image and label in one pass when both are readable; each alone (so one bad file hides nothing) otherwise."""
    if len(volumes) == 2:
        try:
            pair = scan_pair(volumes["image"], volumes["label"], max_bytes=block_bytes, boundaries=True)
            return {"image": pair.image, "label": pair.label}, pair.joint, pair.boundaries
        except ReadError:
            pass  # find out which of the two it was
    scans = {}
    for role, volume in volumes.items():
        try:
            scans[role] = scan_volume(volume, planes=role == "image", max_bytes=block_bytes)
        except ReadError as exc:
            findings.append(finding("unreadable", case, shown[role], f"{role}: {exc.reason}"))
    return scans, None, None


def audit_datalist(path: Path, dataroot: Path | None = None, datastats: Path | None = None,
                   opts: AuditOptions = AuditOptions()) -> tuple[list[Finding], list[str], list[CaseStats]]:
    """All findings of a datalist, its distinct cases (ids), and per-case statistics."""
    dl = load_datalist(path, dataroot)
    findings = list(dl.findings)
    sources = None
    if opts.source is not None:
        entries = [(e.case, e.image, e.label) for e in dl.cases.values() if e.valid and e.image and e.label]
        sources = Sources.index(opts.source, path, entries, opts.classes)
    results = dict(zip((e.where for e in dl.entries),
                       map_cases(partial(audit_entry, datalist=dl, opts=opts, sources=sources), dl.entries, opts.jobs,
                                 opts.progress)))
    seen = set()
    for r in results.values():  # an entry repeated (a validation array copying training) repeats its findings: once
        for f in r.findings:
            key = (f.check, f.case, f.path, f.message)
            if key not in seen:
                seen.add(key)
                findings.append(f)
    findings += folds.folds(path, dl.entries)
    findings += folds.duplicates(path, dl.entries, dl.resolve)
    findings += folds.validation_array(path, dl.entries, dl.resolve)
    # one record per case (Datalist.cases): a case listed twice must not vouch for itself
    stats = [results[e.where].stats for e in dl.cases.values() if results[e.where].stats is not None]
    if sources is not None:
        placed = [(e.case, results[e.where].source) for e in dl.cases.values() if results[e.where].source is not None]
        findings += crop_index.summary(path, placed, len(dl.cases))
    else:
        findings += conversion.unchecked_voxel_sizes(path, [tuple(s.image_spacing[:3]) for s in stats if s.image_spacing])
    findings += contrast.label_contrast(stats, {e.case: e.label for e in dl.cases.values() if e.label})
    annotated = {e.where: (e, results[e.where].channels) for e in dl.entries if results[e.where].channels is not None}
    findings += folds.class_coverage(path, annotated, opts.classes)
    stats_path = datastats or stale_stats.find_stats_file(path)
    if stats_path is not None:
        # DataAnalyzer analyses the `training` array, one record per entry
        findings += stale_stats.stale_stats(stats_path, [e.case for e in dl.entries if e.image and e.section == "training"])
    return findings, list(dl.cases), stats
