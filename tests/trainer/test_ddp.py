"""DDP that cannot hang: two real gloo ranks under torchrun, with a short process-group timeout.

A rank left alone in a collective past the timeout raises and the job fails, so a green run means
no rank ever waited on another: when only one rank's loss is non-finite (every rank skips the
step), and through a validation longer than the timeout (every rank scores its share).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).with_name("ddp_scenarios.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(tmp_path: Path, scenario: str, timeout_s: int, *args: str) -> list[dict]:
    env = {**os.environ, "CELLCHECK_TEST_TIMEOUT_S": str(timeout_s), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
         f"--master_port={_free_port()}", str(SCENARIOS), scenario, str(tmp_path), *args],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]


def test_one_rank_alone_sees_a_nonfinite_loss(tmp_path):
    ranks = run_ranks(tmp_path, "nonfinite", 10)
    for result in ranks:
        steps = result["steps"]
        assert [s["skipped"] for s in steps] == [True, True, False, False]  # rank 1's NaN: both skip
        assert not steps[1]["moved"] and steps[2]["moved"]  # skipped steps leave the weights alone
        assert [s["stop"] for s in steps] == [False, False, False, True]  # rank 0's signal reaches both
    assert ranks[0]["steps"] == ranks[1]["steps"]
    assert all(r["same_weights"] for r in ranks)


def test_validation_longer_than_the_timeout(tmp_path, clean):
    timeout_s = 3
    ranks = run_ranks(tmp_path, "validation", timeout_s, str(clean))
    assert all(r["seconds"] > timeout_s for r in ranks)  # each rank validated longer than a collective may wait
    assert ranks[0]["val_dice"] == ranks[1]["val_dice"] and ranks[0]["val_dice"]
    assert ranks[0]["val_dice_mean"] == ranks[1]["val_dice_mean"]
