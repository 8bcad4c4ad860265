"""The audit report: the stable JSON contract, readable text and markdown, and the atomic writers every output goes through."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from cellcheck.words import counted
from cellcheck.findings import CHECKS, Finding, Severity

REPORT_VERSION = 1
_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


@dataclass
class Report:
    source: str
    cases: int
    findings: list[Finding]
    stats: dict[str, Any] = field(default_factory=lambda: {"per_label": [], "images": {}})
    strict: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # sections beyond the audit contract (e.g. "gate")
    notes: list[str] = field(default_factory=list)  # what was audited and why, when the input was ambiguous
    tables: list[str] = field(default_factory=list)  # text lines shown before the verdict (a coverage plan)

    @property
    def summary(self) -> dict[str, int]:
        out = {s.value: 0 for s in Severity}
        for f in self.findings:
            out[f.severity.value] += 1
        return out

    @property
    def passed(self) -> bool:
        s = self.summary
        return s["error"] == 0 and (not self.strict or s["warning"] == 0)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "version": REPORT_VERSION,
            "source": self.source,
            "cases": self.cases,
            "passed": self.passed,
            "summary": self.summary,
            "findings": [f.to_json() for f in self.findings],
            "stats": self.stats,
            **({"notes": self.notes} if self.notes else {}),
            **self.extra,
        }


def select_findings(findings: Iterable[Finding], select: Sequence[str] = (), ignore: Sequence[str] = ()) -> list[Finding]:
    """Keep the selected check ids (all when none selected) minus the ignored ones, errors first."""
    kept = [f for f in findings if (not select or f.check in select) and f.check not in ignore]
    return sorted(kept, key=lambda f: (_ORDER[f.severity], f.case or "", f.check, f.path or ""))


def parse_check_ids(text: str | None) -> list[str]:
    """A comma-separated list of check ids; unknown ids raise ValueError naming them."""
    if not text:
        return []
    ids = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [i for i in ids if i not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check id(s) {', '.join(unknown)}; known: {', '.join(CHECKS)}")
    return ids


def render_json(report: Report) -> str:
    return json.dumps(report.to_json(), indent=2, default=_jsonable) + "\n"


def render_text(report: Report) -> str:
    lines = []
    for f in report.findings:
        where = f.path or report.source
        lines.append(f"{where}: {f.severity.value} [{f.check}] {f.case or '-'}: {f.message}")
    lines += [f"note: {n}" for n in report.notes]
    lines += report.tables
    s = report.summary
    verdict = "PASSED" if report.passed else "FAILED"
    lines.append(
        f"{verdict}: {_counts(report)} ({report.source})"
    )
    return "\n".join(lines) + "\n"


def _counts(report: Report) -> str:
    """'10 cases, 1 error, 2 warnings, 0 info'."""
    s = report.summary
    return ", ".join([counted(report.cases, "case"), counted(s["error"], "error"), counted(s["warning"], "warning"),
                      counted(s["info"], "info")])


def render_markdown(report: Report) -> str:
    s = report.summary
    verdict = "passed" if report.passed else "**failed**"
    out = [
        f"### cellcheck audit: {verdict}",
        "",
        f"`{report.source}`: {_counts(report)}.",
        "",
        *[f"Note: {n}" for n in report.notes],
        *(["```", *report.tables, "```", ""] if report.tables else []),
    ]
    if report.findings:
        out += ["| severity | check | case | message |", "|---|---|---|---|"]
        for f in report.findings:
            msg = f.message.replace("|", "\\|")
            out.append(f"| {f.severity.value} | `{f.check}` | {f.case or '-'} | {msg} |")
    return "\n".join(out) + "\n"


RENDERERS = {"json": render_json, "text": render_text, "markdown": render_markdown}


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    return str(value)


def audit_report_stats(path: Path) -> dict[str, Any] | None:
    """The `stats` section of an audit report (`cellcheck audit --format json`); None when `path` is not one.

    The audit computes the statistics in its one pass over the voxels: `cellcheck stats` shows them from the
    report instead of reading every voxel again.
    """
    if path.suffix.lower() != ".json" or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict) or not {"version", "findings", "summary", "stats"} <= data.keys():
        return None
    stats = data["stats"]
    return stats if isinstance(stats, dict) and isinstance(stats.get("per_label"), list) else None


_STATS_COLUMNS = (
    ("label", "label"), ("class", "class"), ("crops_annotated", "annotated"), ("crops_present", "present"),
    ("voxels", "voxels"), ("mean_fg_pct_present", "FG% present"), ("mean_fg_pct_annotated", "FG% annotated"),
)


def render_stats(stats: dict[str, Any], fmt: str, source: str = "") -> str:
    """The per-label table (by label value) and image statistics, as text, markdown or JSON."""
    if fmt == "json":
        return json.dumps(stats, indent=2, default=_jsonable) + "\n"
    rows = [[str(r[k]) for k, _ in _STATS_COLUMNS] for r in stats["per_label"]]
    head = [h for _, h in _STATS_COLUMNS]
    img = stats.get("images", {})
    lines = []
    if fmt == "markdown":
        lines += [f"### cellcheck stats: `{source}`", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
        lines.append("  ".join(h.rjust(w) for h, w in zip(head, widths)))
        lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    lines.append("")
    left = img.get("left_out") or {}
    cases = f"cases: {img['cases']}" + (f" ({len(left)} left out of these statistics)" if left else "")
    if "shape" in img:
        lines.append(f"{cases}; shape min {img['shape']['min']} mean {img['shape']['mean']} max {img['shape']['max']}; "
                     f"spacing {img.get('spacing')}")
    else:
        lines.append(f"{cases}; no case in these statistics")
    lines += left_out_lines(left)
    if "intensity" in img:
        i = img["intensity"]
        lines.append("intensity: " + ", ".join(f"{k} {v}" for k, v in i.items()))
    fg = img.get("foreground_intensity", {}).get("foreground")
    if fg:
        lines.append("foreground intensity: " + ", ".join(f"{k} {v}" for k, v in fg.items()))
    return "\n".join(lines) + "\n"


def left_out_lines(left: dict[str, str]) -> list[str]:
    """'left out (unreadable): crop1, crop7', one line per reason, every case named."""
    by_reason: dict[str, list[str]] = {}
    for case, reason in left.items():
        by_reason.setdefault(reason, []).append(case)
    return [f"left out ({reason}): {', '.join(cases)}" for reason, cases in by_reason.items()]
