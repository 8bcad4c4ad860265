"""`cellcheck probe`: the run's own loader, validation read and step measured in a child process, beside the models;
the gate and `cellcheck submit --probe` use what it measured.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import psutil
import pytest

from cellcheck.units import parse_bytes
from commands import cellcheck, write_config

CONFIG = {"model": "segresnet", "datalist": "datalist.json", "output_dir": "runs/probed", "roi_size": [32] * 3,
          "batch_size": 2, "num_patches_per_image": 2, "num_epochs": 2, "smoke_test": True, "max_steps_per_epoch": 2,
          "num_workers": 2, "mem": "64G", "network_width": 0.25, "seed": 5}
STORES = {"datalist": "zarr", "resolution": 8, "exclude_crops": ["crop300", "crop301", "crop302"]}
QUICK = ("--batches", "6", "--seconds", "20", "--steps", "2")
#: One xdist worker for the module: its probed run is measured once, not once per worker (CI: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("probe")


@pytest.fixture(scope="module")
def data(clean, tmp_path_factory) -> Path:
    """A private copy of the clean dataset: probes write into its run folders."""
    root = tmp_path_factory.mktemp("probe") / "data"
    shutil.copytree(clean, root)
    return root


def write(root: Path, name: str, **changes) -> Path:
    return write_config(root, name, CONFIG, **changes)


@pytest.fixture(scope="module")
def probed(data) -> tuple[Path, dict]:
    """One probe of a datalist run with 2 workers, kept in its run folder."""
    config = write(data, "probed")
    proc = cellcheck("probe", str(config), *QUICK, "--format", "json", cwd=data)
    result = json.loads(proc.stdout)
    # exit 1 only for a model below its measurement, said in the report (tiny crops on a shared machine: the
    # model's data term is ~nil and other processes move the tree's PSS; docs/MEMORY.md measures it quietly)
    below = [r for r in result["model"]["ram"] if r["verdict"] != "ok"]
    assert proc.returncode == (1 if below else 0), proc.stderr[-2000:]
    return config, result


def test_every_phase_is_measured_beside_the_model(probed, data):
    config, result = probed
    phases = result["phases"]
    assert list(phases) == ["base", "workers", "epoch", "worst", "validation", "scoring", "step"]
    assert phases["workers"]["processes"] == 3 and phases["epoch"]["processes"] >= 2  # the rank and its 2 workers
    measured = result["measured"]
    assert measured["epoch"]["batches"] >= 2 and measured["epoch"]["s_per_batch"] > 0
    # the worst phase loads the largest training crops, as the model's worst case puts them in flight
    sizes = {c["case"]: c["shape"][0] * c["shape"][1] * c["shape"][2] for c in measured["data"]["train"]}
    largest = sorted(sizes, key=sizes.get, reverse=True)[:len(measured["worst"]["cases"])]
    assert set(measured["worst"]["cases"]) == set(largest)
    rows = result["model"]["ram"]
    assert [r["model"] for r in rows] == ["typical epoch (no validation held)", "worst case"]
    for row in rows:
        assert row["ratio"] == pytest.approx(row["measured_bytes"] / row["predicted_bytes"], abs=1e-3)
        assert (row["verdict"] == "ok") == (not row["bound"] or row["measured_bytes"] <= row["predicted_bytes"])
    # measured: the highest host-side phase (the network ran on this CPU, so its phases are left out)
    host = [p["peak_bytes"] for k, p in phases.items() if k not in ("scoring", "step")]
    assert rows[1]["measured_bytes"] == max(host)
    calib = result["model"]["calibration"]
    # calibrated on this machine: an idle rank is the end of the base phase, an idle worker its share of what the
    # workers phase adds (not compared with the epoch's peak: PSS splits the pages of torch's libraries with any
    # other process that maps them, and a test beside this one moves the tree's figure by tens of MB)
    assert calib["rank_base_bytes"] == phases["base"]["end_bytes"] > 0
    assert calib["worker_base_bytes"] == max(0, (phases["workers"]["end_bytes"] - phases["base"]["end_bytes"]) // 2)
    # the job: the per-rank peak times the config's ranks
    assert result["model"]["job_measured_bytes"] == result["model"]["per_rank_measured_bytes"] * CONFIG.get("gpus", 1)
    fc = result["forecast"]
    assert fc["steps_per_epoch"] == 2 and fc["total_s"] > fc["first_validation_s"] > 0
    assert result["forecast_for_gpu_job"]["loader_only"] is True  # probed without a GPU


def test_the_report_is_kept_and_the_folder_is_no_run(probed, data):
    config, result = probed
    kept = json.loads((data / "runs/probed/probe.json").read_text())
    assert kept["fingerprint"] == result["fingerprint"] and not (data / "runs/probed/split.json").exists()
    again = cellcheck("probe", str(config), *QUICK, "--format", "text", cwd=data)
    assert again.returncode == (1 if "MODEL BELOW MEASUREMENT" in again.stdout else 0), again.stderr[-2000:]
    assert "the previous one kept as probe-" in again.stdout
    assert len(list((data / "runs/probed").glob("probe-*.json"))) == 1  # the first probe, not overwritten
    train = cellcheck("train", "--config", str(config), cwd=data)
    assert train.returncode == 0, train.stderr[-2000:]  # a probe.json does not make the folder a run


def test_the_gate_refuses_a_mem_below_the_measurement(probed, data):
    config, result = probed
    measured = result["model"]["per_rank_measured_bytes"]
    mem = f"{max(1, measured // 2**20 // 2)}M"  # half of what the probe measured
    proc = cellcheck("gate", "--config", str(config), "--mem", mem, "--format", "json", cwd=data)
    report = json.loads(proc.stdout)
    from_probe = [f for f in report["findings"] if f["check"] == "ram-exceeds" and f["details"].get("source") == "probe"]
    assert proc.returncode == 1 and from_probe and "cellcheck probe measured" in from_probe[0]["message"]
    # a probe of another config is not used
    other = cellcheck("gate", "--config", str(config), "--mem", mem, "--set", "num_workers=1", "--format", "json",
                      cwd=data)
    report = json.loads(other.stdout)
    assert not [f for f in report["findings"] if f["details"].get("source") == "probe"]
    assert any("measured another config" in n for n in report["notes"])


def test_a_step_measured_on_a_larger_gpu_is_held_against_the_jobs(probed, data):
    """A probe run on an H100 for an L40S job: 60 GiB allocated fits the card it ran on, not the job's."""
    config, result = probed
    on_h100 = json.loads(json.dumps(result))
    on_h100["measured"]["device"] = "cuda:0"  # what probe.json holds after a probe on a GPU node (none here)
    on_h100["measured"]["step"]["cuda"] = {"max_allocated_bytes": 60 * 2**30, "max_reserved_bytes": 62 * 2**30,
                                           "total_bytes": 85_520_809_984, "name": "NVIDIA H100 80GB HBM3"}
    (data / "runs/on-h100").mkdir(parents=True)
    (data / "runs/on-h100/probe.json").write_text(json.dumps(on_h100))
    found = {}
    for gpu in ("l40s", "h100"):
        proc = cellcheck("gate", "--config", str(config), "--set", "output_dir=runs/on-h100", "--set", f"gpu={gpu}",
                         "--format", "json", cwd=data)
        report = json.loads(proc.stdout)
        found[gpu] = [f for f in report["findings"] if f["check"] == "vram-exceeds"
                      and f["details"].get("source") == "probe"]
    assert len(found["l40s"]) == 1 and "more than the job's L40S has" in found["l40s"][0]["message"]
    assert found["h100"] == []


def test_submit_sizes_mem_and_time_from_the_probe_and_says_so(data):
    config = write(data, "submitted", num_epochs=40, smoke_test=False)
    proc = cellcheck("submit", str(config), "--dry-run", "--probe", cwd=data)
    assert proc.returncode == 0, proc.stderr[-3000:]
    script = (data / "runs/submitted/job.sbatch").read_text()
    probe = json.loads((data / "runs/submitted/probe.json").read_text())
    mem = re.search(r"^#SBATCH --mem=(\S+)$", script, re.M).group(1)
    time_ = re.search(r"^#SBATCH --time=(\S+)$", script, re.M).group(1)
    assert re.search(r"^# --mem=\S+ from cellcheck probe \(.*probe\.json\): .*peak", script, re.M), script[:2500]
    assert re.search(r"^# --time=\S+ from cellcheck probe \(.*probe\.json\): .*loader alone", script, re.M), script[:2500]
    assert parse_bytes(mem) >= probe["model"]["per_rank_measured_bytes"]  # the measured peak, and more
    assert time_.count(":") == 2


def test_stores_are_probed_without_recording_a_split(data):
    config = write(data, "stores", **STORES)
    proc = cellcheck("probe", str(config), *QUICK, "--format", "json", cwd=data)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["measured"]["data"]["kind"] == "stores" and "worst" not in result["phases"]
    assert [r["model"] for r in result["model"]["ram"]] == ["typical epoch (no validation held)", "worst case"]
    assert not (data / "runs/stores/split.json").exists()


def test_a_probe_past_its_limit_stops_says_so_and_leaves_no_process(data):
    config = write(data, "limited")
    proc = cellcheck("probe", str(config), *QUICK, "--limit", "64M", "--format", "text", "--no-save", cwd=data)
    assert proc.returncode == 1 and "STOPPED at" in proc.stdout and "the run needs more than that" in proc.stdout
    left = [p for p in psutil.process_iter(["cmdline"]) if str(config) in " ".join(p.info["cmdline"] or [])]
    assert left == []  # the probe's run and its workers are gone
    assert not (data / "runs/limited/probe.json").exists()


def test_a_bad_config_is_one_line_and_exit_2(data):
    config = write(data, "bad", datalist="nowhere.json")
    proc = cellcheck("probe", str(config), cwd=data)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "nowhere.json" in proc.stderr
