"""Hit and false-alarm rates of the label-contrast check (no source needed), on fixtures converted right and wrong.

For each seed: the generator's own (correct) conversion; the field-style conversion of the same stores
(fixtures/field_convert.py: label s0 and raw s0 whatever their voxel sizes, an 8 nm header); and mixed
datalists, the correct one with two crops swapped for their field-style conversion. A field-style case
is *broken* when its image or label differs from the correct conversion (store 3, which has no 8 nm
conversion, counts broken except crop302, whose content is right and only its header is not).

    python tests/benchmarks/label_contrast_rates.py [--seeds 4] [--clean 20] [--out DIR]

Prints per kind: broken cases flagged (hits), broken cases the check could not test (too little
boundary), correct cases flagged (false alarms).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from cellcheck.audit import run_audit
from cellcheck.audit.options import AuditOptions
from cellcheck.checks.contrast import MIN_EVIDENCE, agreements
from fixtures import make_dataset
from fixtures.field_convert import field_convert


def _arrays(root: Path, entry: dict) -> tuple[np.ndarray, np.ndarray]:
    return (np.asarray(nib.load(str(root / entry["image"])).dataobj), np.asarray(nib.load(str(root / entry["label"])).dataobj))


def _broken(root: Path, field: Path, entry: dict, correct: dict[str, dict]) -> bool:
    name = Path(entry["image"]).name
    if name not in correct:
        return name != "crop302.nii.gz"
    (a, la), (b, lb) = _arrays(root, correct[name]), _arrays(field, entry)
    return not (a.shape == b.shape and (a == b).all() and la.shape == lb.shape and (la == lb).all())


def measure(seeds: int, n_clean: int, work: Path) -> dict[str, dict[str, int]]:
    totals: dict[str, dict[str, int]] = {}
    for seed in range(seeds):
        root = work / f"seed{seed}"
        if not root.exists():
            make_dataset(root, seed=seed, defects="none", n_clean=n_clean)
            field_convert(root / "zarr", root / "field")
        dl = json.loads((root / "datalist.json").read_text())
        fdl = json.loads((root / "field" / "datalist.json").read_text())
        correct = {Path(e["image"]).name: e for e in dl["training"]}
        broken = {Path(e["image"]).name for e in fdl["training"] if _broken(root, root / "field", e, correct)}
        runs = {"correct": (root / "datalist.json", set()), "field": (root / "field" / "datalist.json", broken)}
        swappable = sorted(broken & set(correct))
        rng = random.Random(seed)
        for rep in range(3):
            swap = set(rng.sample(swappable, 2))
            entries = [{**e, "image": f"field/{e['image']}", "label": f"field/{e['label']}"}
                       if Path(e["image"]).name in swap else e for e in dl["training"]]
            path = root / f"mixed{rep}.json"
            path.write_text(json.dumps({"training": entries}))
            runs[f"mixed{rep}"] = (path, swap)
        for kind, (path, bad) in runs.items():
            stats = run_audit(path, options=AuditOptions(jobs=1)).case_stats
            scored = {a.case: a for a in agreements(stats)}
            row = totals.setdefault(kind.rstrip("0123456789"), dict.fromkeys(
                ("broken", "hit", "untestable", "correct", "false_alarm"), 0))
            for s in stats:
                a = scored.get(s.case)
                flagged = a is not None and a.flagged
                if f"{s.case}.nii.gz" in bad:
                    row["broken"] += 1
                    row["hit"] += flagged
                    row["untestable"] += a is None or a.evidence < MIN_EVIDENCE
                else:
                    row["correct"] += 1
                    row["false_alarm"] += flagged
    return totals


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--clean", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        totals = measure(args.seeds, args.clean, args.out or Path(tmp))
    for kind, r in totals.items():
        hit = f"{r['hit']}/{r['broken']} ({r['hit'] / r['broken']:.0%})" if r["broken"] else "-"
        testable = r["broken"] - r["untestable"]
        print(f"{kind:8s} hits {hit}, of the testable {r['hit']}/{testable}; untestable broken {r['untestable']}; "
              f"false alarms {r['false_alarm']}/{r['correct']}")


if __name__ == "__main__":
    main()
