"""`cellcheck submit` without a cluster: the rendered job, the resources it asks for, its refusals."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cellcheck.config import validate_config
from cellcheck.errors import CellcheckError
from cellcheck.report import Report
from cellcheck.submit import (TEMPLATE_NAME, MAX_TIME_S, format_time, parse_time, prepare_job, render, submit,
                              time_limit)

#: One SLURM cluster per test session: under xdist these tests share a worker (scripts/test.sh).
pytestmark = pytest.mark.xdist_group("slurm")

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "slurm" / "configs").glob("*-l40s.yaml"))
FIELD = {"n_train": 198, "n_val": 36, "mean_voxels": 393 * 402 * 418}  # docs/INCIDENTS.md: the data


def stub_report(slurm_mem: str = "227G") -> Report:
    """What the gate returns, reduced to what the job needs from it: the memory plan."""
    return Report(source="datalist.json", cases=234, findings=[],
                  extra={"gate": {"memory": {"ram": {"slurm_mem": slurm_mem}, "dataset": {"mean_shape": [393, 402, 418]}}}})


def example(name: str):
    path = REPO / "slurm" / "configs" / f"{name}-l40s.yaml"
    return path, validate_config(yaml.safe_load(path.read_text()), source=str(path), base=path.parent).config


def bash_syntax_ok(script: str, tmp_path: Path) -> None:
    f = tmp_path / "job.sh"
    f.write_text(script)
    proc = subprocess.run(["bash", "-n", str(f)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_configs_are_valid(path):
    loaded = validate_config(yaml.safe_load(path.read_text()), source=str(path))
    assert loaded.findings == []
    cfg = loaded.config
    assert cfg.gpu == "l40s" and cfg.gpus == 2 and cfg.loss == "partial"


@pytest.mark.parametrize("name", ["segresnet", "swinunetr", "dints"])
def test_rendered_job_for_each_network_on_l40s(name, tmp_path):
    path, cfg = example(name)
    job = prepare_job(path, report=stub_report(), time="2-00:00:00", python="/opt/venv/bin/python")
    s = job.script
    for line in ("#SBATCH --gres=gpu:l40s:2", "#SBATCH --cpus-per-task=16", "#SBATCH --mem=227G",
                 "#SBATCH --time=2-00:00:00", "#SBATCH --signal=B:USR1@300", "#SBATCH --requeue",
                 f"#SBATCH --job-name=cellcheck-{name}", "##SBATCH --partition=",
                 "export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True", "PYTHON=/opt/venv/bin/python",
                 f"CONFIG={path}"):
        assert line in s, line
    assert f"#SBATCH --output={job.path.parent}/slurm-%j.log" in s
    assert job.path == path.parent / "runs" / f"{name}-l40s" / "job.sbatch"
    # the gate is the first thing the job runs, before torchrun
    assert s.index("-m cellcheck gate --config") < s.index("-m torch.distributed.run") < s.index("-m trainer")
    assert "--nnodes=1 --nproc_per_node=\"$GPUS\"" in s
    assert "${SLURM_GPUS_ON_NODE:-0}" in s and "$SLURM_JOB_ID" in s  # the shell's names are left alone
    bash_syntax_ok(s, tmp_path)


def test_memory_and_resources_precedence():
    path, cfg = example("dints")
    assert prepare_job(path, report=stub_report(), time="1:00:00").resources.mem == "227G"  # the plan
    assert prepare_job(path, overrides={"mem": "300G"}, report=stub_report(), time="1:00:00").resources.mem == "300G"
    res = prepare_job(path, overrides={"mem": "300G"}, report=stub_report(), time="1:00:00", mem="400G", cpus=4,
                      gres="gpu:2", partition="l40s").resources
    assert (res.mem, res.cpus, res.gres, res.partition) == ("400G", 4, "gpu:2", "l40s")
    assert prepare_job(path, overrides={"gpu": "a100-80gb", "gpus": 4}, report=stub_report(),
                       time="1:00:00").resources.gres == "gpu:a100-80gb:4"
    s = prepare_job(path, report=stub_report(), time="1:00:00", overrides={"num_epochs": 300, "roi_size": [64] * 3}
                    ).script
    assert "SET=(--set num_epochs=300 --set 'roi_size=[64, 64, 64]')" in s


@pytest.mark.parametrize("text, seconds", [("90", 5400), ("90:30", 5430), ("12:00:00", 43200), ("2-00", 172800),
                                           ("2-03:04", 183840), ("11-00:00:00", MAX_TIME_S)])
def test_slurm_time_forms(text, seconds):
    assert parse_time(text) == seconds
    assert parse_time(format_time(seconds)) == seconds


def test_bad_time_is_one_line_error():
    with pytest.raises(CellcheckError, match="not a SLURM time"):
        parse_time("two days")


def test_time_estimate_from_the_epochs():
    _, cfg = example("dints")
    t, note = time_limit(cfg, **FIELD)
    # 239 epochs of 198 crops, 26 patches of 96^3 each, batch 13 on 2 GPUs: days, not hours, under the cap
    assert 2 * 86400 < parse_time(t) < MAX_TIME_S and t.endswith(":00:00")
    assert "239 epochs of 198 training crops" in note
    longer, _ = time_limit(cfg.model_copy(update={"num_epochs": 478}), **FIELD)
    assert parse_time(longer) > parse_time(t)
    capped, note = time_limit(cfg.model_copy(update={"num_epochs": 5000}), **FIELD)
    assert capped == "11-00:00:00" and "capped at the 11-day limit" in note
    short, _ = time_limit(cfg.model_copy(update={"num_epochs": 1, "max_steps_per_epoch": 1}), 10, 0, 0)
    assert short == "0-01:00:00"  # at least an hour


def test_template_names_are_checked():
    with pytest.raises(CellcheckError, match=r"unknown template names \$gpu_count"):
        render("#SBATCH --gres=gpu:$gpu_count\n", {"gres": "gpu:2"})
    out = render("#SBATCH --partition=$partition\necho $$HOME ${HOME:-x} $(date) $SLURM_JOB_ID\n", {"partition": ""})
    assert out.splitlines() == ["##SBATCH --partition=  (not set: the cluster's default)",
                                "echo $HOME ${HOME:-x} $(date) $SLURM_JOB_ID"]


def test_default_template_uses_only_known_names():
    from cellcheck.submit import JobTemplate

    names = JobTemplate((REPO / "slurm" / TEMPLATE_NAME).read_text()).names()
    assert names == {"job_name", "partition", "gres", "cpus", "mem", "time", "output_dir", "config", "python",
                     "set_args", "resume"}


def test_audit_template_is_valid_bash(tmp_path):
    bash_syntax_ok((REPO / "slurm" / "audit.sbatch").read_text(), tmp_path)


def test_output_dir_that_sbatch_cannot_carry(tmp_path):
    path, _ = example("dints")
    with pytest.raises(CellcheckError, match="output_dir holds ' '"):
        prepare_job(path, overrides={"output_dir": str(tmp_path / "my runs/x")}, report=stub_report(), time="1:00:00")


def test_no_sbatch_is_one_line_and_exit_2(tmp_path):
    """Before the gate even runs: a machine without SLURM gets one line naming the fix."""
    env = {"PATH": str(Path(sys.executable).parent), "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    proc = subprocess.run([sys.executable, "-m", "cellcheck", "submit", str(tmp_path / "any.yaml")], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "cellcheck: sbatch not found on PATH: this machine is not a SLURM submit host; run cellcheck submit on the "
        "cluster's login node, or --dry-run to write the job script only"]


def test_refused_by_the_gate_submits_nothing(defects_all, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump({"model": "segresnet", "datalist": str(defects_all / "datalist.json"),
                                   "output_dir": "runs/bad", "roi_size": [32, 32, 32], "batch_size": 2,
                                   "num_patches_per_image": 2, "num_epochs": 2, "smoke_test": True,
                                   "num_workers": 0}))
    said = []
    status = submit(cfg, dry_run=True, env={"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}, say=said.append)
    assert status == 1
    assert "refused by the gate (exit 1)" in said[-1] and "[blank-image]" in said[0]
    assert not (tmp_path / "runs").exists()


def test_dry_run_dints_on_clean_data(clean, tmp_path):
    """The real gate (audit, config, fake-tensor VRAM pass, RAM plan) sizes the DiNTS job on L40S."""
    cfg = yaml.safe_load((REPO / "slurm" / "configs" / "dints-l40s.yaml").read_text())
    path = tmp_path / "dints-l40s.yaml"
    path.write_text(yaml.safe_dump({**cfg, "datalist": str(clean / "datalist.json")}))
    env = {"PATH": str(Path(sys.executable).parent), "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    proc = subprocess.run([sys.executable, "-m", "cellcheck", "submit", str(path), "--dry-run", "--partition", "gpu"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    written = tmp_path / "runs" / "dints-l40s" / "job.sbatch"
    assert proc.stdout == written.read_text()
    plan = re.search(r"--mem (\d+G) \(the gate's host-RAM plan; model plan (\d+G)\)", proc.stderr)
    assert plan and plan.group(1) == plan.group(2), proc.stderr  # --mem is the gate's plan
    assert f"#SBATCH --mem={plan.group(1)}" in proc.stdout and "#SBATCH --partition=gpu" in proc.stdout
    assert "#SBATCH --gres=gpu:l40s:2" in proc.stdout and "not submitted" in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--time", "two days"], "--time 'two days' is not a SLURM time"),
    (["--mem", "lots"], "Invalid value for '--mem': 'lots' is not a size"),
    (["--template", "nope.sbatch"], "nope.sbatch: no such job template"),
])
def test_bad_arguments_fail_before_the_gate(args, message, tmp_path):
    env = {"PATH": str(Path(sys.executable).parent)}
    proc = subprocess.run([sys.executable, "-m", "cellcheck", "submit", str(tmp_path / "missing.yaml"), "--dry-run", *args],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith(f"cellcheck: {message}"), proc.stderr


def test_node_memory_per_partition_from_sinfo(tmp_path):
    """`sinfo -h -N -o '%P %m'`: one line per node and partition, '*' marks the default partition."""
    from cellcheck.submit import check_node_memory, node_memory_mib

    fake = tmp_path / "sinfo"
    fake.write_text("#!/bin/sh\nprintf 'gpu* 515000\\ngpu* 257000\\nbigmem 2060000+\\n'\n")
    fake.chmod(0o755)
    env = {"PATH": str(tmp_path)}
    assert node_memory_mib(None, env) == 515000
    assert node_memory_mib("bigmem", env) == 2060000
    assert node_memory_mib("nope", env) is None
    assert node_memory_mib(None, {"PATH": str(tmp_path / "empty")}) is None  # no sinfo: no check
    check_node_memory("500G", "227G", None, env)
    with pytest.raises(CellcheckError, match=r"--mem 600G is more than any node of the default partition has "
                                             r"\(515000 MiB, sinfo\).*plan predicts 227G.*ask for --mem 227G"):
        check_node_memory("600G", "227G", None, env)
    with pytest.raises(CellcheckError, match="predicts 600G.*larger nodes"):
        check_node_memory("600G", "600G", None, env)


def test_output_dir_holding_a_run_is_refused_before_the_gate(tmp_path):
    """A second run into a run folder is refused as the trainer refuses it: exit 1, one line, nothing written."""
    out = tmp_path / "runs" / "x"
    out.mkdir(parents=True)
    (out / "last.pt").write_bytes(b"a checkpoint")
    (out / "metrics.jsonl").write_text('{"epoch": 0, "train_loss": 1.0}\n')
    cfg = tmp_path / "c.yaml"  # its datalist does not exist: the refusal comes before the gate would say so
    cfg.write_text(yaml.safe_dump({"model": "segresnet", "datalist": "missing.json", "output_dir": "runs/x"}))
    said = []
    assert submit(cfg, dry_run=True, env={}, say=said.append) == 1
    assert len(said) == 1 and "already holds a run (last.pt, metrics.jsonl)" in said[0]
    assert "cellcheck submit --resume" in said[0] and "new output_dir" in said[0] and "nothing submitted" in said[0]
    assert sorted(p.name for p in out.iterdir()) == ["last.pt", "metrics.jsonl"]


def test_resume_reaches_the_job_and_requeues_always_resume(tmp_path):
    """`--resume` makes the job's first start continue the run; a requeued job resumes either way."""
    path, cfg = example("segresnet")
    plain = prepare_job(path, report=stub_report(), time="1:00:00").script
    resumed = prepare_job(path, report=stub_report(), time="1:00:00", resume=True).script
    assert "RESUME=()" in plain and "RESUME=(--resume)" in resumed
    for script in (plain, resumed):
        assert 'if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]; then\n    RESUME=(--resume)' in script
        bash_syntax_ok(script, tmp_path)
