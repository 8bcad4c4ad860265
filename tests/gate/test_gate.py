"""`cellcheck gate`: a clean dataset with a sound config passes; each field failure refuses the job."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cellcheck.cli import cli
from cellcheck.gate import run_gate

CONFIG = {"model": "segresnet", "datalist": "datalist.json", "output_dir": "runs/a", "roi_size": [32, 32, 32],
          "batch_size": 1, "num_patches_per_image": 2, "num_epochs": 50, "mem": "64G", "num_workers": 2}


def write_config(root: Path, **changes) -> Path:
    p = root / "train.yaml"
    p.write_text(yaml.safe_dump({**CONFIG, **changes}))
    return p


def failing(report):
    return sorted({f.check for f in report.findings if f.severity.value in ("error", "warning")})


def test_clean_dataset_and_sound_config_pass(clean):
    report = run_gate(config=write_config(clean), env={})
    assert failing(report) == [] and report.exit_code == 0
    plan = report.to_json()["gate"]
    assert plan["plan"]["model"] == "segresnet" and plan["memory"]["vram"]["fits"] is True
    # the RAM plan follows this trainer's loading chain (patches of the config's ROI), not Auto3DSeg's
    ram = plan["memory"]["ram"]
    assert ram["config"]["chain"] == "trainer" and ram["config"]["batch"] == max(1, CONFIG["batch_size"] // CONFIG["num_patches_per_image"])
    assert ram["sample"]["out_bytes"] == 5 * CONFIG["num_patches_per_image"] * math.prod(CONFIG["roi_size"])


def test_a_class_map_sizes_the_memory_plan_for_its_channels(clean):
    """A 5-class config is planned, traced and reported as a 5-channel network, not the default 14."""
    five = ["ecs", "pm", "mito_mem", "mito_lum", "nuc"]
    plans = {n: run_gate(config=write_config(clean, classes=names), env={}).to_json()["gate"]["memory"]
             for n, names in ((5, five), (14, None))}
    assert plans[5]["vram"]["network"]["out_channels"] == 5 and plans[14]["vram"]["network"]["out_channels"] == 14
    # the logits, their gradient and the loss's buffers scale with the channels: fewer bytes at the peak
    assert plans[5]["vram"]["tracked"]["peak_bytes"] < plans[14]["vram"]["tracked"]["peak_bytes"]


@pytest.mark.parametrize("changes, env, check", [
    ({"num_epochs": 2}, {}, "stale-config"),
    ({"loss": "dicece"}, {}, "loss-unmasked"),
    ({}, {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments=True"}, "alloc-conf-invalid"),
    ({"roi_size": [256, 256, 256], "batch_size": 64, "gpu": "v100-16gb"}, {}, "vram-exceeds"),
    ({"mem": "1G", "num_workers": 8}, {}, "ram-exceeds"),
])
def test_each_field_failure_refuses(clean, changes, env, check):
    report = run_gate(config=write_config(clean, **changes), env=env)
    assert check in failing(report)
    assert report.exit_code == 1


def test_missing_keys_listed_all_at_once(clean):
    p = write_config(clean)
    raw = yaml.safe_load(p.read_text())
    del raw["num_patches_per_image"], raw["roi_size"]
    p.write_text(yaml.safe_dump(raw))
    report = run_gate(config=p, env={})
    keys = sorted(f.details["key"] for f in report.findings if f.check == "config-invalid")
    assert keys == ["num_patches_per_image", "roi_size"]


def test_defective_dataset_fails_gate(defects_all):
    report = run_gate(defects_all / "datalist.json", env={})
    assert report.exit_code == 1 and "blank-image" in failing(report)


def test_warnings_fail_unless_no_strict(clean):
    p = write_config(clean, num_epochs=2)
    r = CliRunner().invoke(cli, ["gate", "--config", str(p), "--format", "json"], catch_exceptions=False)
    assert r.exit_code == 1
    r = CliRunner().invoke(cli, ["gate", "--config", str(p), "--format", "json", "--no-strict"], catch_exceptions=False)
    assert r.exit_code == 0, r.stdout


def test_gate_without_anything_to_check_is_exit_2(tmp_path):
    r = CliRunner().invoke(cli, ["gate"], catch_exceptions=False)
    assert r.exit_code == 2 and "nothing to gate" in r.stderr


def test_gate_console_script(clean):
    exe = Path(sys.executable).parent / "cellcheck"
    p = write_config(clean, num_epochs=2)
    proc = subprocess.run([str(exe), "gate", "--config", str(p), "--set", "num_epochs=100", "--format", "json"],
                          capture_output=True, text=True, timeout=300, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["gate"]["config"]["num_epochs"] == 100
