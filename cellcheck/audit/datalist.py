"""Audit of a MONAI datalist: each entry's files, headers and voxels, then the datalist as a whole."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cellcheck.checks import annotations, folds, geometry, intensity, labels, memory, stats_file
from cellcheck.classes import NUM_CLASSES
from cellcheck.datalist import Datalist, Entry, load_datalist
from cellcheck.findings import Finding, finding
from cellcheck.scan import scan_volume
from cellcheck.sources.volume import ReadError, Volume, open_volume
from cellcheck.stats import CaseStats


@dataclass
class EntryResult:
    findings: list[Finding] = field(default_factory=list)
    stats: CaseStats | None = None
    channels: frozenset[int] | None = None


def audit_entry(entry: Entry, datalist: Datalist, case_budget: int = memory.DEFAULT_CASE_BUDGET_BYTES) -> EntryResult:
    """Every per-case check of one entry: annotations, files, headers (cheap) before voxels."""
    out = EntryResult()
    case, where = entry.case, datalist.path
    channels: frozenset[int] | None = None  # None: the entry says nothing, i.e. fully annotated
    if entry.has_annotated_classes:
        parsed, found = annotations.annotated_classes(case, where, entry.annotated_classes)
        out.findings += found
        channels = parsed.channels if parsed.channels is not None else frozenset()
        out.channels = parsed.channels
    elif entry.valid:
        out.channels = frozenset(range(NUM_CLASSES))
    if not entry.valid:
        return out
    # Findings name files as the datalist writes them (relative to the data root).
    shown = {"image": entry.image, "label": entry.label}
    volumes: dict[str, Volume] = {}
    for role, rel in shown.items():
        p = datalist.resolve(rel)
        try:
            exists = p.exists()
        except PermissionError:
            out.findings.append(finding("unreadable", case, rel, f"{role}: permission denied on a folder above it"))
            continue
        if not exists:
            out.findings.append(
                finding("missing-file", case, rel, f"{role} file does not exist; fix the path in {entry.where} or fetch it")
            )
            continue
        try:
            volumes[role] = open_volume(p)
        except ReadError as exc:
            out.findings.append(finding("unreadable", case, rel, f"{role}: {exc.reason}"))
    image, label = volumes.get("image"), volumes.get("label")
    if image and label:
        out.findings += geometry.image_label_pair(case, image.header, label.header, shown["label"])
    if image:
        out.findings += memory.oversized(case, shown["image"], image.header.voxels, case_budget)
    stats = CaseStats(case=case, channels=channels)
    try:
        if image:
            scan = scan_volume(image, planes=True)
            out.findings += intensity.image_content(case, shown["image"], scan)
            stats.image_shape, stats.image_spacing = image.header.shape, image.header.spacing
            stats.image_moments = (scan.voxels, scan.total, scan.total_sq)
            if image.header.dtype.itemsize == 1 and scan.counts is not None:
                stats.image_hist = _hist256(scan.counts)
    except ReadError as exc:
        out.findings.append(finding("unreadable", case, shown["image"], f"image: {exc.reason}"))
    try:
        if label:
            scan = scan_volume(label)
            out.findings += labels.label_values(case, shown["label"], scan, NUM_CLASSES)
            if scan.counts is not None:
                stats.label_counts, stats.label_voxels = scan.counts, scan.voxels
                if channels:
                    out.findings += annotations.unannotated_present(case, shown["label"], scan.counts, channels)
    except ReadError as exc:
        out.findings.append(finding("unreadable", case, shown["label"], f"label: {exc.reason}"))
    out.stats = stats
    return out


def audit_datalist(
    path: Path,
    dataroot: Path | None = None,
    datastats: Path | None = None,
    case_budget: int = memory.DEFAULT_CASE_BUDGET_BYTES,
) -> tuple[list[Finding], int, list[CaseStats]]:
    """All findings of a datalist, the number of cases, and per-case statistics."""
    dl = load_datalist(path, dataroot)
    findings = list(dl.findings)
    results = {}
    for e in dl.entries:
        results[e.where] = r = audit_entry(e, dl, case_budget)
        findings += r.findings
    findings += folds.folds(path, dl.entries)
    findings += folds.duplicates(path, dl.entries, dl.resolve)
    annotated = {e.where: (e, results[e.where].channels) for e in dl.entries if results[e.where].channels is not None}
    findings += folds.class_coverage(path, annotated)
    stats_path = datastats or stats_file.find_stats_file(path)
    if stats_path is not None:
        findings += stats_file.stale_stats(stats_path, [e.case for e in dl.entries if e.image])
    cases = len({e.case for e in dl.entries})  # distinct cases: a duplicated entry is one case
    return findings, cases, [r.stats for r in results.values() if r.stats is not None]


def _hist256(counts: dict[int, int]):
    import numpy as np

    h = np.zeros(256, dtype=np.int64)
    for v, n in counts.items():
        if 0 <= v < 256:
            h[v] = n
    return h
