"""scripts/gpu_check.sh and trainer.gpu_check: the no-GPU path CI runs, and the measuring code on a CPU.

The GPU numbers themselves need a GPU; here the same functions run on the CPU at tiny sizes (memory
fields absent), so the script a GPU session runs is exercised up to the CUDA calls.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from trainer import gpu_check

REPO = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-GPU path")
def test_without_a_gpu_it_says_so_and_exits_0(tmp_path):
    out = tmp_path / "gpu.json"
    run = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), str(out)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert "no CUDA GPU visible" in run.stdout
    report = json.loads(out.read_text())
    assert report["gpu"] is None and "nothing measured" in report["skipped"]


def test_templates_are_the_l40s_configs():
    found = {t["model"]: t for t in gpu_check.templates()}
    assert set(found) == {"segresnet", "swinunetr", "dints"}
    assert found["dints"]["batch"] == 13 and found["dints"]["roi"] == [96, 96, 96]
    assert found["segresnet"]["roi"] == [224, 224, 144] and all(t["amp"] == "bf16" for t in found.values())


def test_one_training_step_measured_on_the_cpu():
    step = gpu_check.measure_step("segresnet", [32, 32, 32], 1, None, CPU, "adamw", num_classes=5, width=0.25)
    assert step["oom"] is False and step["loss_finite"] and step["seconds"] > 0
    assert "max_memory_allocated" not in step  # CUDA-only


def test_loss_timing_on_the_cpu():
    row = gpu_check.loss_timing(CPU, torch.float32, "eager", size=8, rounds=2)
    assert row["impl"] == "eager" and row["median_ms"] > 0 and row["logits_bytes"] == 2 * 14 * 8**3 * 4
    with pytest.raises(ValueError, match="unknown loss"):
        gpu_check.loss_timing(CPU, torch.float32, "onehot", size=8, rounds=1)


def test_table_shows_predicted_beside_measured():
    pred = {"tensors_peak_bytes": 8 * 2**30, "card_bytes": 10 * 2**30, "fits": True, "optimizer": "sgd"}
    report = {"gpu": {"name": "NVIDIA L40S", "total_bytes": 46068 * 2**20, "torch": "2.x", "cuda": "12.x"},
              "steps": [{"model": "dints", "which": "L40S template", "config": "dints-l40s.yaml", "roi": [96] * 3,
                         "batch": 13, "amp": "bf16", "predicted": pred,
                         "measured": {"max_memory_allocated": 9 * 2**30, "max_memory_reserved": 10 * 2**30,
                                      "nvml_used_bytes": 11 * 2**30, "seconds": 1.5, "oom": False}},
                        {"model": "dints", "which": "largest predicted", "config": "dints-l40s.yaml",
                         "roi": [96] * 3, "batch": 40, "amp": "bf16", "predicted": pred,
                         "measured": {"oom": True, "error": "CUDA out of memory"}}],
              "loss": [{"impl": "compiled", "dtype": "bfloat16", "size": 96, "median_ms": 3.2, "warmup_s": 40.0,
                        "peak_extra_over_logits": 1.0}],
              "skipped": [], "seconds": 300.0}
    table = gpu_check.render(report)
    assert "dints      L40S template      96x96x96        13      8.00     10.00      9.00   1.12     10.00     11.00" in table
    assert "OOM: CUDA out of memory" in table and "compiled 96^3" in table
