"""Auto3DSeg DataAnalyzer files: its per-case output read back, and the corrected summary written.

DataAnalyzer keeps per-label statistics in a list and summarizes them by list position; a label
missing from a case shifts every later one, which is how nuc came out at 0 % in the field (it is
48.98 % where present). Its per-case file (`datastats_by_case.yaml`) is right, though: each record's
`label_stats.labels` lists the label values present and `label_stats.label[j]` holds the statistics
of `labels[j]`, `foreground_percentage` a fraction of the case. Reading those records by value gives
the corrected table without touching a voxel. In the summary written here `label_stats.label[i]` is
always label value i, so pipelines that read it by index get the right class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from cellcheck.annotated_classes import parse_annotated_classes
from cellcheck.classes import DEFAULT_CLASS_MAP, ClassMap
from cellcheck.datalist import case_id, load_datalist
from cellcheck.errors import CellcheckError
from cellcheck.files import write_atomic
from cellcheck.stats import CaseStats, histogram_stats, per_label, sum_histograms, sum_joints


def is_by_case_file(path: Path) -> bool:
    """Whether `path` looks like DataAnalyzer output (YAML, or JSON holding `stats_by_cases`), not a datalist."""
    if path.suffix.lower() in (".yaml", ".yml"):
        return True
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    with open(path, "rb") as f:
        return b'"stats_by_cases"' in f.read(1 << 20)


def read_by_case(path: Path, datalist: Path | None = None, classes: ClassMap = DEFAULT_CLASS_MAP) -> list[CaseStats]:
    """Per-case label statistics from DataAnalyzer's per-case output, grouped by label value; no voxel is read.

    Which classes each case is annotated for comes from `datalist` (default: datalist.json beside the file);
    without one every case counts as fully annotated, as DataAnalyzer itself assumes.
    """
    records = _records(path)
    channels = _annotations(datalist if datalist is not None else _beside(path), len(classes))
    out = []
    for i, rec in enumerate(records):
        where = f"{path}: stats_by_cases[{i}]"
        if not isinstance(rec, dict) or not isinstance(rec.get("label_stats"), dict):
            raise CellcheckError(f"{where} has no label_stats (DataAnalyzer ran without labels?); rerun it with a label key")
        image = str(rec.get("image_filepath", ""))
        shape = _shape(rec, where)
        voxels = int(np.prod(shape, dtype=np.int64))
        ls = rec["label_stats"]
        values, entries = ls.get("labels"), ls.get("label")
        if not isinstance(values, list) or not isinstance(entries, list) or len(values) != len(entries):
            raise CellcheckError(f"{where}: label_stats.labels and label_stats.label differ in length; "
                                 "the file is truncated or not DataAnalyzer output")
        counts = {}
        for value, entry in zip(values, entries):
            fraction = entry.get("foreground_percentage") if isinstance(entry, dict) else None
            if not isinstance(fraction, (int, float)):
                raise CellcheckError(f"{where}: label value {value} has no foreground_percentage; rerun DataAnalyzer")
            counts[int(value)] = int(round(float(fraction) * voxels))
        case = case_id(image)
        spacing = (rec.get("image_stats") or {}).get("spacing")
        out.append(CaseStats(case=case, channels=channels.get(case) if channels is not None else None,
                             label_counts=counts, label_voxels=voxels, image_shape=tuple(shape),
                             image_spacing=tuple(float(v) for v in spacing) if isinstance(spacing, list) else None,
                             image_path=image, label_path=str(rec.get("label_filepath", ""))))
    return out


def _records(path: Path) -> list:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: a 1 MB file in well under a second
    try:
        with open(path, "rb") as f:
            doc = yaml.load(f, Loader=loader)
    except OSError as exc:
        raise CellcheckError(f"{path}: cannot read ({exc.strerror or exc}); check the path")
    except yaml.YAMLError as exc:
        raise CellcheckError(f"{path}: not valid YAML/JSON ({str(exc).splitlines()[0]}); rerun DataAnalyzer")
    records = doc.get("stats_by_cases") if isinstance(doc, dict) else None
    if not isinstance(records, list):
        raise CellcheckError(f"{path}: no 'stats_by_cases' list; pass DataAnalyzer's datastats_by_case.yaml "
                             "(the summary datastats.yaml has no per-case records)")
    return records


def _shape(rec: dict, where: str) -> list[int]:
    shape = (rec.get("image_stats") or {}).get("shape")
    if isinstance(shape, list) and shape and isinstance(shape[0], list):
        shape = shape[0]  # one shape per image channel
    if not isinstance(shape, list) or not shape or not all(isinstance(v, int) for v in shape):
        raise CellcheckError(f"{where}: no image_stats.shape to turn foreground fractions into voxels; rerun "
                             "DataAnalyzer without histogram_only")
    return shape


def _beside(path: Path) -> Path | None:
    p = path.parent / "datalist.json"
    return p if p.is_file() else None


def _annotations(datalist: Path | None, num_classes: int) -> dict[str, frozenset[int] | None] | None:
    """case -> annotated channels (None: the entry says nothing, fully annotated), or None without a datalist."""
    if datalist is None:
        return None
    out: dict[str, frozenset[int] | None] = {}
    for e in load_datalist(datalist).entries:
        channels = None
        if e.has_annotated_classes:
            channels = parse_annotated_classes(e.annotated_classes, num_classes).channels or frozenset()
        out.setdefault(e.case, channels)
    return out


def datastats(cases: Sequence[CaseStats], classes: ClassMap = DEFAULT_CLASS_MAP) -> dict[str, Any]:
    """A DataAnalyzer-shaped summary: `stats_summary` (corrected) and `stats_by_cases` (file paths)."""
    shapes = np.array([c.image_shape[:3] for c in cases if c.image_shape], dtype=float)
    spacings = np.array([c.image_spacing[:3] for c in cases if c.image_spacing], dtype=float)
    hists = [c.image_hist for c in cases if c.image_hist is not None]
    joints = [c.joint for c in cases if c.joint is not None]
    joint = sum_joints(joints) if joints else None
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
