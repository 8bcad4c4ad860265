"""Catch and false-alarm rates of the label-contrast check (no source needed), per raw-texture model.

For each texture model (fixtures/volumes.py "additive", the one the check was first tuned on; and
fixtures/textures.py "imaging", built apart from it: per-crop staining, blur, 1/f texture, shot noise)
and seed: the generator's own (correct) conversion; the field-style conversion of the same stores
(fixtures/field_convert.py: label s0 and raw s0 whatever their voxel sizes, an 8 nm header); and mixed
datalists, the correct one with a few crops swapped for their field-style conversion. A field-style
case is *misaligned* when its image or label differs from the correct conversion (store 3, which has
no 8 nm conversion, counts misaligned except crop302, whose content is right and only its header is not).

    python tests/benchmarks/label_contrast_rates.py [--textures additive imaging] [--seeds 2] [--clean 600]
        [--jobs 2] [--out DIR]

Prints per texture and kind: misaligned cases flagged (of all, and of those the check could judge:
enough boundary for its evidence), correct cases flagged (false alarms, per 1,000).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from cellcheck.audit import run_audit  # noqa: E402
from cellcheck.audit.options import AuditOptions  # noqa: E402
from cellcheck.checks.contrast import agreements  # noqa: E402
from cellcheck.datalist import case_id  # noqa: E402
from fixtures import make_dataset  # noqa: E402
from fixtures.field_convert import crop_of, field_convert  # noqa: E402


@dataclass
class Run:
    """One datalist to audit and which of its cases are misaligned."""

    texture: str
    kind: str  # correct | field | mixed
    datalist: Path
    misaligned: set[str]


def _arrays(root: Path, entry: dict) -> tuple[np.ndarray, np.ndarray]:
    return (np.asarray(nib.load(str(root / entry["image"])).dataobj), np.asarray(nib.load(str(root / entry["label"])).dataobj))


def runs(work: Path, texture: str, seed: int, n_clean: int, swaps: int = 3) -> list[Run]:
    """Write (or reuse) one seed's dataset and its field-style conversion; the datalists to audit."""
    root = work / f"{texture}-seed{seed}-n{n_clean}"
    if not (root / "field" / "datalist.json").exists():
        make_dataset(root, seed=seed, defects="none", n_clean=n_clean, texture=texture)
        field_convert(root / "zarr", root / "field")
    correct = {case_id(e["image"]): e for e in json.loads((root / "datalist.json").read_text())["training"]}
    field = {crop_of(e["image"]): e for e in json.loads((root / "field" / "datalist.json").read_text())["training"]}
    broken = set()
    for crop, e in field.items():
        if crop not in correct:
            if crop != "crop302":
                broken.add(crop)
            continue
        (a, la), (b, lb) = _arrays(root, correct[crop]), _arrays(root / "field", e)
        if not (a.shape == b.shape and (a == b).all() and la.shape == lb.shape and (la == lb).all()):
            broken.add(crop)
    out = [Run(texture, "correct", root / "datalist.json", set()),
           Run(texture, "field", root / "field" / "datalist.json", {case_id(field[c]["image"]) for c in broken})]
    rng = random.Random(seed)
    swappable = sorted(broken & set(correct))
    for rep in range(swaps):
        swap = set(rng.sample(swappable, max(2, len(correct) // 50)))  # 2 crops of a small datalist, 2 % of a large one
        entries = [{**e, "image": f"field/{field[c]['image']}", "label": f"field/{field[c]['label']}"} if c in swap else e
                   for c, e in correct.items()]
        path = root / f"mixed{rep}.json"
        path.write_text(json.dumps({"training": entries}))
        out.append(Run(texture, "mixed", path, {case_id(field[c]["image"]) for c in swap}))
    return out


def score(run: Run, jobs: int) -> dict[str, int]:
    """Counts of one run: misaligned (flagged, judgeable, judgeable and flagged), correct (flagged)."""
    stats = run_audit(run.datalist, options=AuditOptions(jobs=jobs)).case_stats
    scored = {a.case: a for a in agreements(stats)}
    row = dict.fromkeys(("misaligned", "hit", "judgeable", "judged_hit", "correct", "false_alarm"), 0)
    for s in stats:
        a = scored.get(s.case)
        flagged = a is not None and a.flagged
        if s.case in run.misaligned:
            row["misaligned"] += 1
            row["hit"] += flagged
            judgeable = a is not None and a.judgeable
            row["judgeable"] += judgeable
            row["judged_hit"] += judgeable and flagged
        else:
            row["correct"] += 1
            row["false_alarm"] += flagged
    return row


def measure(work: Path, textures: list[str], seeds: int, n_clean: int, jobs: int) -> dict[tuple[str, str], dict[str, int]]:
    totals: dict[tuple[str, str], dict[str, int]] = {}
    for texture in textures:
        for seed in range(seeds):
            for run in runs(work, texture, seed, n_clean):
                row = score(run, jobs)
                total = totals.setdefault((texture, run.kind), dict.fromkeys(row, 0))
                for k, v in row.items():
                    total[k] += v
    return totals


def report(totals: dict[tuple[str, str], dict[str, int]]) -> str:
    lines = [f"{'texture':9s} {'kind':8s} {'caught (judgeable)':>22s} {'caught (all)':>16s} {'false alarms':>22s}"]
    for (texture, kind), r in totals.items():
        judged = f"{r['judged_hit']}/{r['judgeable']} ({r['judged_hit'] / r['judgeable']:.0%})" if r["judgeable"] else "-"
        caught = f"{r['hit']}/{r['misaligned']}" if r["misaligned"] else "-"
        fa = f"{r['false_alarm']}/{r['correct']} ({1000 * r['false_alarm'] / max(r['correct'], 1):.1f}/1000)"
        lines.append(f"{texture:9s} {kind:8s} {judged:>22s} {caught:>16s} {fa:>22s}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--textures", nargs="+", default=["additive", "imaging"])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--clean", type=int, default=600)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="keep the datasets here (reused when present)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(report(measure(args.out or Path(tmp), args.textures, args.seeds, args.clean, args.jobs)))


if __name__ == "__main__":
    main()
