"""`cellcheck gate --mem`: below the worst case in flight is an error, below the worst case plus headroom a warning."""

import math

import yaml

from cellcheck.gate import run_gate

CONFIG = {"model": "segresnet", "datalist": "datalist.json", "output_dir": "runs/a", "roi_size": [32, 32, 32],
          "batch_size": 1, "num_patches_per_image": 2, "num_epochs": 50, "num_workers": 2}


def gate(root, mem):
    path = root / "train.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "mem": mem}))
    report = run_gate(config=path, env={})
    return report, {f.check: f for f in report.findings if f.check.startswith("ram-")}


def test_mem_between_the_worst_case_and_its_headroom_is_a_warning(clean):
    report, found = gate(clean, "1000G")
    ram = report.to_json()["gate"]["memory"]["ram"]
    assert found == {} and ram["worst_case"]["drivers"]  # the plan names the crops behind its worst case
    peak, required = ram["peak_bytes"], ram["required_bytes"]
    between = math.ceil(peak / 2**20)  # in MiB: at or above the worst case, below the headroom
    assert between * 2**20 < required
    report, found = gate(clean, f"{between}M")
    assert set(found) == {"ram-headroom"} and found["ram-headroom"].severity.value == "warning"
    assert ram["slurm_mem"] in found["ram-headroom"].message
    report, found = gate(clean, f"{math.floor(peak / 2**20) - 1}M")
    assert set(found) == {"ram-exceeds"} and found["ram-exceeds"].severity.value == "error"
    assert report.exit_code == 1
