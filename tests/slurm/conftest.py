"""A real single-node SLURM cluster for the job tests (scripts/slurm_cluster.sh), up once per session.

Skipped, with the reason, where it cannot run: not root (slurmd starts jobs as their user), the
Debian packages absent (scripts/ci_slurm.sh installs them), or too little memory for a job.
Torn down by the PIDs the script recorded.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = REPO / "scripts" / "slurm_cluster.sh"
#: the tiny DDP job of these tests plans 7G; the node gets the machine's memory less 2 GiB
MIN_MEMORY_GIB = 10


@dataclass
class Cluster:
    dir: Path
    env: dict[str, str]
    cpus: int

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """A SLURM client command (sbatch, scontrol, scancel, sinfo) against this cluster."""
        proc = subprocess.run(list(args), capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr}")
        return proc

    def sbatch(self, *args: str) -> str:
        return self.run("sbatch", "--parsable", *args).stdout.strip().split(";")[0]

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as a dict (JobState, ExitCode, Restarts, ...): no accounting database here."""
        out = self.run("scontrol", "show", "job", "-o", job_id).stdout
        return dict(re.findall(r"(\w+)=(\S*)", out))

    def wait(self, job_id: str, timeout: float = 240) -> dict[str, str]:
        """Poll until the job has ended; its final record."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            info = self.job(job_id)
            if info["JobState"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                                    "BOOT_FAIL", "DEADLINE", "PREEMPTED"):
                return info
            time.sleep(0.5)
        self.run("scancel", job_id, check=False)
        raise AssertionError(f"job {job_id} still {info['JobState']} after {timeout} s: {info}")

    def node_memory_mib(self) -> int:
        return int(self.run("sinfo", "-h", "-N", "-o", "%m").stdout.split()[0])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: the daemons live in sbin, which a CI shell's PATH may lack
PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root: slurmd starts each job as its user"
    missing = [c for c in ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "sinfo", "pgrep")
               if shutil.which(c, path=PATH) is None]
    if missing:
        return f"SLURM not installed ({', '.join(missing)} missing): run scripts/ci_slurm.sh (slurm-wlm, munge)"
    total_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    if total_gib < MIN_MEMORY_GIB:
        return f"{total_gib:.0f} GiB of memory; the job tests need {MIN_MEMORY_GIB}"
    return None


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Cluster:
    """slurm_cluster.sh config + run: the daemons are children of a process this fixture started."""
    reason = _why_not()
    if reason:
        pytest.skip(f"no local SLURM cluster: {reason}")
    root = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "PATH": PATH, "SLURM_CONF": str(root / "slurm.conf"), "CELLCHECK_PYTHON": sys.executable,
           "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    for key in [k for k in env if k.startswith("SLURM_") and k != "SLURM_CONF"]:
        del env[key]  # the test process itself may run inside a SLURM job
    script = ["bash", str(CLUSTER_SCRIPT)]
    subprocess.run([*script, "config", str(root), str(_free_port()), str(_free_port())], check=True,
                   capture_output=True, timeout=60, env=env)
    daemons = subprocess.Popen([*script, "run", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=env)
    c = Cluster(dir=root, env=env, cpus=os.cpu_count() or 1)
    try:
        deadline = time.time() + 30
        while not {"idle", "mixed"} & set(c.run("sinfo", "-h", "-N", "-o", "%T", check=False).stdout.split()):
            if daemons.poll() is not None or time.time() > deadline:
                logs = "\n".join(f"{p.name}: {p.read_text()[-1500:]}" for p in sorted((root / "log").glob("*")))
                pytest.fail(f"the local SLURM cluster did not come up:\n{logs}")
            time.sleep(0.2)
        yield c
    finally:
        daemons.terminate()  # by PID: run stops slurmd, slurmctld and munged by theirs and reaps them
        try:
            daemons.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemons.kill()
            daemons.wait()
        pids = (root / "daemons.pids").read_text().split() if (root / "daemons.pids").exists() else []
        left = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
        assert not left, f"SLURM daemons still running after teardown: {left}"
