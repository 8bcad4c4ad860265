"""The converted datalist trains: `cellcheck train` (gate, then SegResNetDS on the CPU) on convert's output.

The smallest run the trainer takes: one epoch of one step at a 32^3 ROI, then validation on fold 0.
The conversion and the run share a class map other than the default 14 (`--classes`, the config's
`classes`): label values, `annotated_classes` channels, the network's outputs and the checkpoint's
class names all follow it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml

FIVE = ["ecs", "pm", "mito_mem", "mito_lum", "nuc"]


@pytest.mark.slow
def test_cellcheck_train_on_the_converted_datalist_with_its_class_map(clean, tmp_path):
    (tmp_path / "classes.yaml").write_text(yaml.safe_dump(FIVE))
    out = tmp_path / "converted"
    convert = subprocess.run([sys.executable, "-m", "cellcheck", "convert", str(clean / "zarr"), "--resolution", "8",
                              "--output-dir", str(out), "--classes", str(tmp_path / "classes.yaml")],
                             capture_output=True, text=True, timeout=600)
    assert convert.returncode == 0, convert.stderr[-2000:]
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": "segresnet", "datalist": str(out / "datalist.json"), "output_dir": str(tmp_path / "run"),
        "classes": "classes.yaml", "roi_size": [32, 32, 32], "batch_size": 1, "num_patches_per_image": 1,
        "num_epochs": 1, "smoke_test": True, "max_steps_per_epoch": 1, "num_workers": 0, "mem": "64G",
        "network_width": 0.25,
        "gpu": "l40s", "seed": 3,
    }))
    run = subprocess.run([sys.executable, "-m", "cellcheck", "train", "--config", str(cfg)], capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    gate = json.loads((tmp_path / "run/gate.json").read_text())
    assert gate["passed"] and gate["summary"]["error"] == 0
    [epoch] = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines() if line.strip()]
    assert epoch["steps"] == 1 and epoch["nonfinite_skipped"] == 0 and epoch["val_dice"]
    assert set(epoch["val_dice"]) <= set(FIVE)
    best = torch.load(tmp_path / "run/best.pt", weights_only=False)
    assert best["class_names"] == FIVE and best["config"]["num_classes"] == len(FIVE)
