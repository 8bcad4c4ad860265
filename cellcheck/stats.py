"""Per-label statistics grouped by label value, never by array position (docs/INCIDENTS.md, incident 13).

MONAI's DataAnalyzer summary averaged per-label stats by the label's index in each case's list
of present labels, so nuc (present in few crops) came out at 0 %; here every number is keyed
by the label value itself and averaged over the crops where it is annotated or present.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from cellcheck.boundaries import PairSteps
from cellcheck.classes import DEFAULT_CLASS_MAP, ClassMap
from cellcheck.findings import Finding
from cellcheck.grid import format_scale

#: Findings after which a case's voxels (some or all) never reached the statistics, and the word for it.
UNREAD = {"unreadable": "unreadable", "missing-file": "file missing", "datalist-invalid": "invalid entry"}


@dataclass
class CaseStats:
    """What one case contributes: annotated channels (None = all), label value counts, image summary."""

    case: str
    channels: frozenset[int] | None
    label_counts: dict[int, int] | None = None
    label_voxels: int = 0
    image_shape: tuple[int, ...] | None = None
    image_spacing: tuple[float, ...] | None = None
    image_hist: np.ndarray | None = None  # 256 bins for uint8 images
    image_moments: tuple[int, float, float] | None = None  # (n, sum, sum of squares)
    joint: np.ndarray | None = None  # (label values, 256 intensities) voxel counts of uint8 pairs, rows up to the largest label
    image_path: str | None = None
    label_path: str | None = None
    resolutions: list[list[float]] | None = None  # CellMap crops: voxel sizes it can train at (nm, z y x)
    boundaries: PairSteps | None = None  # intensity steps across label boundaries (the label-contrast check)


def per_label(cases: Sequence[CaseStats], classes: ClassMap = DEFAULT_CLASS_MAP) -> list[dict[str, Any]]:
    """One row per label value 1..C: crops annotated / present, voxels, mean foreground %."""
    rows = []
    for ch, name in enumerate(classes.names):
        value = ch + 1
        annotated = [c for c in cases if c.label_counts is not None and (c.channels is None or ch in c.channels)]
        fractions = [c.label_counts.get(value, 0) / c.label_voxels for c in annotated if c.label_voxels]
        present = [f for f in fractions if f > 0]
        rows.append(
            {
                "label": value,
                "channel": ch,
                "class": name,
                "crops_annotated": len(annotated),
                "crops_present": len(present),
                "voxels": int(sum(c.label_counts.get(value, 0) for c in annotated)),
                "mean_fg_pct_present": round(100 * float(np.mean(present)), 4) if present else 0.0,
                "mean_fg_pct_annotated": round(100 * float(np.mean(fractions)), 4) if fractions else 0.0,
            }
        )
    return rows


def histogram_of(counts: dict[int, int] | None) -> np.ndarray | None:
    """Exact intensity histogram of an integer image with values in 0..65535 (uint8: 256 bins)."""
    if not counts or min(counts) < 0 or max(counts) >= 1 << 16:
        return None
    h = np.zeros(256 if max(counts) < 256 else 1 << 16, dtype=np.int64)
    for v, n in counts.items():
        h[v] = n
    return h


def sum_histograms(hists: Sequence[np.ndarray]) -> np.ndarray:
    """Add histograms of 8-bit (256 bins) and 16-bit (65536 bins) images."""
    out = np.zeros(max(h.size for h in hists), dtype=np.int64)
    for h in hists:
        out[: h.size] += h
    return out


def histogram_stats(h: np.ndarray) -> dict[str, float]:
    """Exact mean/std/min/max/median/0.5 and 99.5 percentiles of an integer intensity histogram."""
    h = np.asarray(h, dtype=np.float64)
    n = h.sum()
    if not n:
        return {}
    v = np.arange(h.size)
    mean = float((h * v).sum() / n)
    cdf = np.cumsum(h) / n
    nz = np.flatnonzero(h)

    def q(p: float) -> int:
        return int(np.searchsorted(cdf, p / 100.0))

    return {
        "mean": round(mean, 4),
        "stdev": round(float(np.sqrt(max((h * v * v).sum() / n - mean**2, 0.0))), 4),
        "min": int(nz[0]),
        "max": int(nz[-1]),
        "median": q(50),
        "percentile_00_5": q(0.5),
        "percentile_99_5": q(99.5),
    }


def compact_joint(joint: np.ndarray | None) -> np.ndarray | None:
    """The joint histogram's rows up to the largest label value present (what travels back from a worker:
    a crop's 15 rows, not 256 rows of 256 int64)."""
    if joint is None:
        return None
    rows = np.flatnonzero(joint.any(axis=1))
    return joint[: int(rows[-1]) + 1 if rows.size else 1].copy()


def sum_joints(joints: Sequence[np.ndarray]) -> np.ndarray:
    """Sum of (compacted) joint histograms as one (256, 256) array."""
    out = np.zeros((256, 256), dtype=np.int64)
    for j in joints:
        out[: j.shape[0]] += j
    return out


def foreground_intensity(cases: Sequence[CaseStats], num_classes: int) -> dict[str, Any]:
    """Image intensity inside the label foreground (label > 0), overall and per label value."""
    joints = [c.joint for c in cases if c.joint is not None]
    if not joints:
        return {}
    joint = sum_joints(joints)
    return {
        "foreground": histogram_stats(joint[1:].sum(axis=0)),
        "per_label": {str(v): histogram_stats(joint[v]) for v in range(1, num_classes + 1) if joint[v].any()},
    }


def image_summary(cases: Sequence[CaseStats], num_classes: int = len(DEFAULT_CLASS_MAP)) -> dict[str, Any]:
    """Shape min/mean/max, spacings, intensity mean/std/percentiles pooled over all voxels."""
    shapes = np.array([c.image_shape for c in cases if c.image_shape and len(c.image_shape) == 3])
    out: dict[str, Any] = {"cases": len(cases)}
    if len(shapes):
        out["shape"] = {
            "min": shapes.min(0).tolist(),
            "mean": [round(v, 1) for v in shapes.mean(0).tolist()],
            "max": shapes.max(0).tolist(),
        }
    spacings = sorted({tuple(round(s, 6) for s in c.image_spacing) for c in cases if c.image_spacing})
    out["spacing"] = [list(s) for s in spacings]
    hists = [c.image_hist for c in cases if c.image_hist is not None]
    if hists:
        out["intensity"] = histogram_stats(sum_histograms(hists))
    elif any(c.image_moments for c in cases):
        n = sum(c.image_moments[0] for c in cases if c.image_moments)
        s = sum(c.image_moments[1] for c in cases if c.image_moments)
        ss = sum(c.image_moments[2] for c in cases if c.image_moments)
        if n:
            mean = s / n
            out["intensity"] = {"mean": round(mean, 4), "stdev": round(float(np.sqrt(max(ss / n - mean**2, 0))), 4)}
    fg = foreground_intensity(cases, num_classes)
    if fg:
        out["foreground_intensity"] = fg
    return out


def left_out(case_ids: Iterable[str], cases: Sequence[CaseStats], findings: Iterable[Finding],
             resolution: Sequence[float] | None = None) -> dict[str, str]:
    """Each case the statistics leave out, with why in a few words; why: a mean over fewer cases must say so.

    A case is left out when part of it could not be read (unreadable, missing file, invalid entry: the
    statistics would mix its label with no image, or the reverse), when its labels were not counted
    (a CellMap crop that cannot train at `resolution`), or when it gave no record at all.
    """
    out: dict[str, str] = {}
    for f in findings:
        if f.case and f.check in UNREAD:
            out.setdefault(f.case, UNREAD[f.check])
    for c in cases:
        if c.label_counts is None and c.case not in out:
            out[c.case] = f"cannot train at {format_scale(resolution)}" if resolution else "labels not read"
    recorded = {c.case for c in cases}
    for case in case_ids:
        if case not in recorded:
            out.setdefault(case, "not read")
    return out


def summarize(cases: Sequence[CaseStats], classes: ClassMap = DEFAULT_CLASS_MAP,
              n_cases: int | None = None, left: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The report's `stats`: per-label rows, image summary, and for CellMap crops the resolutions each trains at.

    `n_cases` is the audit's count of cases; `left` the cases left out and why (`left_out`): the
    statistics are over the others, `images.left_out` names them and `images.unread` counts those
    that gave no record at all, so every command says the same number of cases.
    """
    left = dict(left or {})
    used = [c for c in cases if c.case not in left]
    out = {"per_label": per_label(used, classes), "images": image_summary(used, len(classes))}
    images = out["images"]
    images["cases"] = max(n_cases or 0, len(cases))
    if images["cases"] > len(cases):
        images["unread"] = images["cases"] - len(cases)
    if left:
        images["in_statistics"], images["left_out"] = len(used), dict(sorted(left.items()))
    resolutions = {c.case: c.resolutions for c in cases if c.resolutions is not None}
    if resolutions:
        out["resolutions"] = dict(sorted(resolutions.items()))
    return out
