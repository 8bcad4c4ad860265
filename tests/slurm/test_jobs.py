"""The job templates on a real SLURM (a single-node cluster on this machine, conftest.py).

Real sbatch, real jobs, job states from `scontrol show job` (no accounting database). The node
declares two fake L40S: jobs see SLURM_GPUS_ON_NODE=2 and run torchrun with two ranks on the CPU
(gloo); torch sees no CUDA.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from cellcheck.submit import prepare_job

#: One SLURM cluster per test session: under xdist these tests share a worker (scripts/test.sh).
pytestmark = pytest.mark.xdist_group("slurm")

REPO = Path(__file__).resolve().parents[2]
#: tiny on purpose: SegResNetDS at 32^3 on the CPU, a few steps an epoch
TINY = {"model": "segresnet", "datalist": "datalist.json", "roi_size": [32, 32, 32], "batch_size": 2,
        "num_patches_per_image": 2, "num_epochs": 2, "smoke_test": True, "max_steps_per_epoch": 2,
        "num_workers": 0, "gpu": "l40s", "seed": 7, "network_width": 0.25}


def config(root: Path, run: str, **changes) -> Path:
    p = root / f"{run}.yaml"
    p.write_text(yaml.safe_dump({**TINY, "output_dir": f"runs/{run}", **changes}))
    return p


def submit_cli(cluster, *args: str) -> subprocess.CompletedProcess:
    """`cellcheck submit`, run as the user runs it."""
    return subprocess.run([sys.executable, "-m", "cellcheck", "submit", *args, "--python", sys.executable],
                          capture_output=True, text=True, env=cluster.env, timeout=300)


def job_id_of(stderr: str) -> str:
    m = re.search(r"submitted job (\d+)", stderr)
    assert m, stderr
    return m.group(1)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_gate_failure_ends_the_job_with_its_exit_code(cluster, defects_all):
    """The data is broken on the node: the job's first step fails, nothing trains."""
    cfg = config(defects_all, "slurm-refused")
    job = prepare_job(cfg, partition="gpu", cpus=1, mem="2G", time="0:10:00", python=sys.executable,
                      env=cluster.env)
    assert not job.report.passed  # the local gate says so too; cellcheck submit would not submit it
    job.path.parent.mkdir(parents=True, exist_ok=True)
    job.path.write_text(job.script)
    job_id = cluster.sbatch(str(job.path))
    info = cluster.wait(job_id, timeout=120)
    assert info["JobState"] == "FAILED"
    assert info["ExitCode"] == f"{job.report.exit_code}:0" == "1:0"
    log = (job.path.parent / f"slurm-{job_id}.log").read_text()
    assert "== cellcheck gate" in log and re.search(r"FAILED: \d+ cases, \d+ errors", log)
    assert "[blank-image]" in log and "[missing-file]" in log  # the report itself
    assert "the gate failed (exit 1): no training started" in log
    assert "== training" not in log and "cellcheck train" not in log
    assert sorted(p.name for p in job.path.parent.iterdir()) == ["job.sbatch", f"slurm-{job_id}.log"]


def test_clean_job_trains_and_completes(cluster, clean):
    """cellcheck submit on clean data: the gate passes twice (login node, job) and a CPU run finishes."""
    cfg = config(clean, "slurm-complete")
    out = clean / "runs" / "slurm-complete"
    proc = submit_cli(cluster, str(cfg), "--partition", "cpu", "--gres", "none", "--cpus", "1", "--time", "0:15:00")
    assert proc.returncode == 0, proc.stderr
    job_id = job_id_of(proc.stderr)
    script = (out / "job.sbatch").read_text()
    assert "#SBATCH --partition=cpu" in script and "##SBATCH --gres=" in script
    info = cluster.wait(job_id, timeout=180)
    log = (out / f"slurm-{job_id}.log").read_text()
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", log[-3000:]
    assert "PASSED: 10 cases" in log and "== training on 0 GPU(s)" in log
    assert "training ended with exit status 0" in log
    for name in ("gate.json", "metrics.jsonl", "memory.jsonl", "memory.png", "last.pt", "best.pt"):
        assert (out / name).is_file(), name
    assert [r["epoch"] for r in records(out / "metrics.jsonl") if "train_loss" in r] == [1, 2]
    samples = records(out / "memory.jsonl")
    assert samples and all(s["total"]["pss_bytes"] > 0 for s in samples)
    assert torch.load(out / "last.pt", weights_only=False)["state"]["epoch"] == 2


def test_mem_larger_than_the_node(cluster, clean):
    """SLURM refuses such a job at sbatch; cellcheck submit refuses it before, with the plan's figure."""
    too_much = f"{2 * cluster.node_memory_mib() // 1024}G"
    cfg = config(clean, "slurm-toobig", gpus=2)
    proc = submit_cli(cluster, str(cfg), "--mem", too_much, "--cpus", "1", "--time", "0:10:00")
    assert proc.returncode == 2, proc.stderr
    out = clean / "runs" / "slurm-toobig"
    job = prepare_job(cfg, mem=too_much, cpus=1, time="0:10:00", python=sys.executable, env=cluster.env)
    predicted = job.report.extra["gate"]["memory"]["ram"]["slurm_mem"]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cellcheck: --mem " + too_much), proc.stderr
    assert f"predicts {predicted}" in lines[0] and f"--mem {predicted}" in lines[0]
    assert "submitted" not in proc.stderr and not (out / "job.sbatch").exists()

    job.path.parent.mkdir(parents=True, exist_ok=True)
    job.path.write_text(job.script)
    refused = cluster.run("sbatch", "--parsable", str(job.path), check=False)
    assert refused.returncode != 0
    assert re.search(r"node configuration is not available|Memory specification can not be satisfied",
                     refused.stderr), refused.stderr
    assert cluster.run("squeue", "-h", "-o", "%i").stdout.strip() == ""


def test_sigusr1_checkpoints_requeues_and_resumes(cluster, clean):
    """Pre-emption warning on a two-rank DDP job: rank 0 checkpoints, the job requeues itself and
    the resumed run finishes the remaining epochs."""
    cfg = config(clean, "slurm-usr1", gpus=2, batch_size=1, num_epochs=3, num_epochs_per_validation=3,
                 max_steps_per_epoch=4)
    out = clean / "runs" / "slurm-usr1"
    proc = submit_cli(cluster, str(cfg), "--partition", "gpu", "--cpus", str(min(2, cluster.cpus)),
                      "--time", "0:15:00")
    assert proc.returncode == 0, proc.stderr
    job_id = job_id_of(proc.stderr)
    assert "#SBATCH --gres=gpu:l40s:2" in (out / "job.sbatch").read_text()
    deadline = time.time() + 180
    while not any(r.get("epoch") == 1 and "train_loss" in r for r in
                  (records(out / "metrics.jsonl") if (out / "metrics.jsonl").exists() else [])):
        assert time.time() < deadline, "no epoch finished in 180 s"
        assert cluster.job(job_id)["JobState"] in ("PENDING", "RUNNING")
        time.sleep(0.2)
    cluster.run("scancel", "--signal=USR1", "--batch", job_id)  # what --signal=B:USR1@300 sends
    info = cluster.wait(job_id, timeout=240)
    log = (out / f"slurm-{job_id}.log").read_text()
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", log[-4000:]
    assert info["Restarts"] == "1"
    assert "== USR1" in log and "SIGUSR1: checkpoint saved" in log and "== requeueing job" in log
    assert "(restart 1)" in log and "== resuming from" in log
    assert "Traceback" not in log and "ChildFailedError" not in log  # both ranks stopped at the same step
    rec = records(out / "metrics.jsonl")
    signal_at = next(i for i, r in enumerate(rec) if r.get("event") == "signal")
    assert rec[signal_at]["signal"] == "SIGUSR1"
    assert [r["epoch"] for r in rec[:signal_at] if "train_loss" in r] == [1]
    assert [r["epoch"] for r in rec[signal_at:] if "train_loss" in r] == [2, 3]  # after it: the resumed run
    assert torch.load(out / "last.pt", weights_only=False)["state"]["epoch"] == 3


def test_audit_job_on_the_cpu_partition(cluster, defects_all, tmp_path):
    """slurm/audit.sbatch as it is: the audit's exit status is the job's, the report lands in REPORT_DIR."""
    job_id = cluster.sbatch("--partition=cpu", "--cpus-per-task=1", f"--output={tmp_path}/audit-%j.log",
                            str(REPO / "slurm" / "audit.sbatch"), str(defects_all / "datalist.json"), str(tmp_path))
    info = cluster.wait(job_id, timeout=120)
    log = (tmp_path / f"audit-{job_id}.log").read_text()
    assert info["JobState"] == "FAILED" and info["ExitCode"] == "1:0", log
    report = json.loads((tmp_path / "audit.json").read_text())
    assert report["passed"] is False and report["summary"]["error"] > 0
    assert "### cellcheck audit: **failed**" in log and "| error | `blank-image` |" in log
    assert (tmp_path / "audit.md").read_text() in log
