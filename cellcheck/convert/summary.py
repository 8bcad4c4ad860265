"""What `cellcheck convert` prints: converted, unchanged and refused crops (JSON, or text for people)."""

from __future__ import annotations

import json

from cellcheck.convert import ConvertResult
from cellcheck.words import counted


def render_summary(result: ConvertResult, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(result.to_json(), indent=2) + "\n"
    lines = []
    where = f"{result.datalist} ({counted(result.folds, 'fold')})" if result.datalist else "no datalist written"
    lines.append(f"{counted(len(result.converted), 'crop')} converted, {len(result.unchanged)} unchanged, "
                 f"{len(result.refused)} refused -> {where}")
    for o in result.refused:
        f = o.refused
        lines.append(f"  refused {f.case or '-'} [{f.check}]: {f.message}")
    for o in result.outcomes:
        for note in o.notes:
            lines.append(f"  note {o.case}: {note}")
    if result.uncovered:
        lines.append(f"  classes in too few crops for every fold to hold one where present: {', '.join(result.uncovered)}")
    return "\n".join(lines) + "\n"
