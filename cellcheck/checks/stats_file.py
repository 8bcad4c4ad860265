"""Stale Auto3DSeg data statistics: computed on another set of cases than the datalist (docs/INCIDENTS.md, incident 14)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import yaml

from cellcheck.datalist import case_id
from cellcheck.findings import Finding, finding

#: Names Auto3DSeg's DataAnalyzer output goes by, looked for beside the datalist.
STATS_NAMES = ("datastats.yaml", "data_stats.yaml", "datastats.json")


def find_stats_file(datalist: Path) -> Path | None:
    for name in STATS_NAMES:
        p = datalist.parent / name
        if p.is_file():
            return p
    return None


def stale_stats(stats_path: Path, cases: list[str]) -> Iterator[Finding]:
    """stale-stats when the stats file's cases are not the datalist's cases (one per datalist entry)."""
    try:
        doc = yaml.safe_load(stats_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        yield finding("stale-stats", None, stats_path, f"data stats file cannot be read ({type(exc).__name__}); regenerate it")
        return
    by_case = doc.get("stats_by_cases") if isinstance(doc, dict) else None
    if not isinstance(by_case, list):
        yield finding("stale-stats", None, stats_path, "data stats file has no 'stats_by_cases' list; regenerate it")
        return
    stats_cases = [case_id(str(c.get("image_filepath", ""))) for c in by_case if isinstance(c, dict)]
    ours = set(cases)
    extra, missing = sorted(set(stats_cases) - ours), sorted(ours - set(stats_cases))
    if extra or missing or len(stats_cases) != len(cases):
        yield finding(
            "stale-stats", None, stats_path,
            f"data stats cover {len(stats_cases)} cases, the datalist {len(cases)} "
            f"({len(extra)} not in the datalist, {len(missing)} missing); rerun the data analyzer",
            stats_cases=len(stats_cases), datalist_cases=len(cases), extra=extra[:20], missing=missing[:20],
        )
