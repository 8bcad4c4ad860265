"""Write the corrected statistics in the shape of Auto3DSeg's `datastats.yaml`.

Auto3DSeg's DataAnalyzer keeps per-label statistics in a list and summarizes them by list
position; a label missing from a case shifts every later one, which is how nuc came out at
0 % (FIELD_NOTES 13). Here `label_stats.label[i]` is always label value i, for every value
0..14, so pipelines that read the file by index get the right class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from cellcheck.classes import DEFAULT_CLASS_MAP, ClassMap
from cellcheck.report import write_atomic
from cellcheck.stats import CaseStats, histogram_stats, per_label, sum_histograms


def datastats(cases: Sequence[CaseStats], classes: ClassMap = DEFAULT_CLASS_MAP) -> dict[str, Any]:
    """A DataAnalyzer-shaped summary: `stats_summary` (corrected) and `stats_by_cases` (file paths)."""
    shapes = np.array([c.image_shape[:3] for c in cases if c.image_shape], dtype=float)
    spacings = np.array([c.image_spacing[:3] for c in cases if c.image_spacing], dtype=float)
    hists = [c.image_hist for c in cases if c.image_hist is not None]
    joints = [c.joint for c in cases if c.joint is not None]
    joint = np.sum(joints, axis=0) if joints else None
    rows = {r["label"]: r for r in per_label(cases, classes)}
    labels = list(range(len(classes) + 1))
    label_entries = []
    for v in labels:
        entry: dict[str, Any] = {"label_value": v, "class": "background" if v == 0 else classes.names[v - 1]}
        if v:
            entry["foreground_percentage"] = rows[v]["mean_fg_pct_present"]
            entry["foreground_percentage_annotated"] = rows[v]["mean_fg_pct_annotated"]
            entry["crops_annotated"] = rows[v]["crops_annotated"]
            entry["crops_present"] = rows[v]["crops_present"]
        if joint is not None:
            entry["image_intensity"] = histogram_stats(joint[v])
        label_entries.append(entry)
    summary: dict[str, Any] = {
        "n_cases": len(cases),
        "image_stats": {
            "shape": _min_mean_max(shapes),
            "spacing": _min_mean_max(spacings),
            "intensity": histogram_stats(sum_histograms(hists)) if hists else {},
        },
        "image_foreground_stats": {"intensity": histogram_stats(joint[1:].sum(axis=0)) if joint is not None else {}},
        "label_stats": {"labels": labels, "label": label_entries},
        "note": "written by cellcheck: label_stats.label[i] is label value i (aggregated by value, not position)",
    }
    by_case = [{"image_filepath": c.image_path, "label_filepath": c.label_path} for c in cases]
    return {"stats_summary": summary, "stats_by_cases": by_case}


def write_datastats(path: Path, stats: dict[str, Any]) -> None:
    """Atomically write the summary as YAML."""
    write_atomic(path, yaml.safe_dump(stats, sort_keys=False))


def _min_mean_max(a: np.ndarray) -> dict[str, list[float]]:
    if not len(a):
        return {}
    return {"min": a.min(0).tolist(), "mean": np.round(a.mean(0), 3).tolist(), "max": a.max(0).tolist()}
