"""The probe's forecast of a run's time beside the time the same run really took, on this machine.

    python tests/benchmarks/forecast_accuracy.py [--out DIR] [--clean 30] [--epochs 2] [--workers 2] [--json OUT]

A fixture dataset of `--clean` crops (about two thirds train: at least 20 steps per epoch with batch 2
and 2 patches per crop), a config of `--epochs` epochs validating after each; `cellcheck probe` on it,
then `cellcheck train` on it. Compared: the forecast's loop (epochs x seconds per epoch + validations x
seconds per validation) with the loop the trainer recorded (the sum of its epochs' seconds and
validation seconds in metrics.jsonl), and the forecast's total (the loop plus opening the data,
building the network and the first step) with the wall time of `cellcheck train` less the gate's own
time (`cellcheck gate` timed alone). Timings on a shared CPU: a benchmark, never a CI assertion.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "benchmarks")]

from bench_json import emit  # noqa: E402


def run(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    t = time.time()
    proc = subprocess.run([sys.executable, "-m", "cellcheck", *args], cwd=cwd, capture_output=True, text=True)
    return proc, time.time() - t


def measure(root: Path, n_clean: int, epochs: int, workers: int) -> dict[str, Any]:
    from fixtures import make_dataset

    if not (root / "datalist.json").is_file():
        make_dataset(root, seed=0, defects="none", n_clean=n_clean)
    config = root / "forecast.yaml"
    config.write_text(yaml.safe_dump({
        "model": "segresnet", "datalist": "datalist.json", "output_dir": f"runs/forecast-{time.time():.0f}",
        "roi_size": [32, 32, 32], "batch_size": 2, "num_patches_per_image": 2, "num_epochs": epochs,
        "num_epochs_per_validation": 1, "smoke_test": True, "num_workers": workers, "network_width": 0.25,
        "mem": "16G", "seed": 0}))
    probe, probe_s = run("probe", str(config), "--format", "json", "--no-save", cwd=root)
    if probe.returncode not in (0, 1):
        raise SystemExit(probe.stderr)
    result = json.loads(probe.stdout)
    fc = result["forecast"]
    gate, gate_s = run("gate", "--config", str(config), "--format", "json", cwd=root)
    train, train_s = run("train", "--config", str(config), cwd=root)
    if train.returncode != 0:
        raise SystemExit(train.stderr[-3000:])
    out_dir = root / yaml.safe_load(config.read_text())["output_dir"]
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    epochs_done = [r for r in records if "train_loss" in r]
    loop = sum(r["seconds"] + r.get("val_seconds", 0.0) for r in epochs_done)
    steps = [r["steps"] for r in epochs_done]
    forecast_loop = epochs * fc["epoch_s"] + epochs * fc["validation_s"]
    return {
        "crops": len(result["measured"]["data"]["train"]), "validation_crops": len(result["measured"]["data"]["validation"]),
        "steps_per_epoch": {"forecast": fc["steps_per_epoch"], "run": steps},
        "loop_s": {"forecast": round(forecast_loop, 1), "run": round(loop, 1), "ratio": round(forecast_loop / loop, 3)},
        "epoch_s": {"forecast": fc["epoch_s"], "run": [r["seconds"] for r in epochs_done]},
        "validation_s": {"forecast": fc["validation_s"], "run": [r.get("val_seconds") for r in epochs_done]},
        "total_s": {"forecast": fc["total_s"], "run": round(train_s - gate_s, 1),
                    "ratio": round(fc["total_s"] / (train_s - gate_s), 3)},
        "probe_s": round(probe_s, 1), "gate_s": round(gate_s, 1), "train_wall_s": round(train_s, 1),
        "s_per_step": {"fed": result["measured"]["step"]["s_per_step_fed"],
                       "network": result["measured"]["step"]["s_per_step_network"]},
        "data_bound": fc["data_bound"], "workers": workers,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="dataset folder (kept; default: a temporary one)")
    ap.add_argument("--clean", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp) / "data"
        row = measure(root, args.clean, args.epochs, args.workers)
    emit(row, args.json)


if __name__ == "__main__":
    main()
