"""The probe's memory beside the RAM model and beside an independent sampler, on a dataset of skewed crop sizes.

    python tests/benchmarks/probe_memory.py [--cache DIR] [--mix 20x48,3x224] [--workers 2] [--json OUT]

Many small crops and a few large ones (the fixture generator's crops, repeated: `loader_memory.mixed_dataset`),
the trainer's own chain (patches of the ROI, uint8 labels), 2 workers. `cellcheck probe` runs under
`cellcheck profile`: a second sampler, in another process, of the same tree (its samples of the probe's
own process, which only watches, are left out). Reported per phase: the probe's peak, the independent
sampler's peak over the same span, and the model (calibrated by the probe's idle rank and worker):
its typical epoch against the epoch phase (within 15 % is the target), its worst case against the
highest host-side phase (never below it is the target).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "benchmarks")]

from bench_json import emit  # noqa: E402

GiB = 2**30


def independent_peaks(profile: Path, phases: dict[str, Any]) -> dict[str, int]:
    """Per phase, the other sampler's peak of the tree without its root (the probe's watching process)."""
    records = [json.loads(line) for line in profile.read_text().splitlines() if line.strip()]
    root = records[0]["processes"][0]["pid"]
    out = {}
    for name, p in phases.items():
        peak = 0
        for r in records:
            if p["start_t"] <= r["t"] <= p["end_t"] and r["processes"]:
                own = sum(q["pss_bytes"] for q in r["processes"] if q["pid"] == root)
                peak = max(peak, r["total"]["footprint_bytes"] - own)
        out[name] = peak
    return out


def measure(cache: Path, mix: tuple[tuple[int, int], ...], workers: int) -> dict[str, Any]:
    from loader_memory import mixed_dataset

    datalist = mixed_dataset(cache, mix)
    config = cache / "probe.yaml"
    config.write_text(yaml.safe_dump({
        "model": "segresnet", "datalist": datalist.name, "output_dir": "runs/probe-memory", "roi_size": [64] * 3,
        "batch_size": 2, "num_patches_per_image": 2, "num_epochs": 2, "smoke_test": True, "num_workers": workers,
        "prefetch_factor": 2, "network_width": 0.25, "mem": "16G"}))
    report, prof = cache / "probe-report.json", cache / "probe-profile.jsonl"
    prof.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, "-m", "cellcheck", "profile", "--output", str(prof), "--interval", "0.1",
                           "--", sys.executable, "-m", "cellcheck", "probe", str(config), "--format", "json",
                           "--no-save", "--output", str(report), "--batches", "200", "--seconds", "300"],
                          capture_output=True, text=True, cwd=cache)
    if not report.is_file():
        raise SystemExit(proc.stderr[-3000:])
    result = json.loads(report.read_text())
    other = independent_peaks(prof, result["phases"])
    model = result["model"]
    rows = {name: {"probe_gib": round(p["peak_bytes"] / GiB, 3), "independent_gib": round(other[name] / GiB, 3),
                   "probe_over_independent": round(p["peak_bytes"] / other[name], 3) if other[name] else None}
            for name, p in result["phases"].items()}
    typical, worst = model["ram"][0], model["ram"][1]
    return {
        "mix": [f"{n} x {side}^3" for side, n in mix], "workers": workers,
        "crops": {"train": len(result["measured"]["data"]["train"]),
                  "validation": len(result["measured"]["data"]["validation"])},
        "calibration_gib": {k: round(v / GiB, 3) for k, v in model["calibration"].items()},
        "phases": rows,
        "typical": {"model_gib": round(typical["predicted_bytes"] / GiB, 3),
                    "epoch_measured_gib": round(typical["measured_bytes"] / GiB, 3),
                    "epoch_independent_gib": round(other["epoch"] / GiB, 3),
                    "model_over_measured": round(typical["predicted_bytes"] / typical["measured_bytes"], 3)},
        "worst": {"model_gib": round(worst["predicted_bytes"] / GiB, 3),
                  "measured_gib": round(worst["measured_bytes"] / GiB, 3),
                  "independent_gib": round(max(other[k] for k in result["phases"] if k not in ("scoring", "step"))
                                           / GiB, 3),
                  "model_over_measured": round(worst["predicted_bytes"] / worst["measured_bytes"], 3)},
        "verdicts": [r["verdict"] for r in model["ram"]],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, help="folder for the generated crops (kept; default: a temporary one)")
    ap.add_argument("--mix", default="20x48,3x224", help="crops x side, comma-separated")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    mix = tuple((int(side), int(n)) for n, side in (part.split("x") for part in args.mix.split(",")))
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp)
        cache.mkdir(parents=True, exist_ok=True)
        row = measure(cache, mix, args.workers)
    emit(row, args.json)


if __name__ == "__main__":
    main()
