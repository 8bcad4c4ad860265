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
    """stale-stats when the stats file's cases are not the datalist's cases (cases counted once, as everywhere)."""
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
    ours, theirs = set(cases), set(stats_cases)
    extra, missing = sorted(theirs - ours), sorted(ours - theirs)
    if extra or missing or sorted(stats_cases) != sorted(cases):
        detail = (f"{len(extra)} not in the datalist, {len(missing)} missing" if extra or missing
                  else f"the same cases, {len(stats_cases)} records for {len(cases)} entries")
        yield finding(
            "stale-stats", None, stats_path,
            f"data stats cover {len(theirs)} cases, the datalist's training {len(ours)} ({detail}); "
            "rerun the data analyzer",
            stats_cases=len(theirs), datalist_cases=len(ours), extra=extra[:20], missing=missing[:20],
        )
