"""Exit codes and table of tests/benchmarks/check_loss_ratio.py on synthetic pytest-benchmark JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "check_loss_ratio.py"


def _bench(impl: str, median: float, peak: int) -> dict:
    return {
        "group": "partial-loss B=2 C=14 64^3 fp32",
        "name": f"test_loss_fwd_bwd[{impl}]",
        "stats": {"median": median, "min": median, "max": median},
        "extra_info": {
            "impl": impl,
            "peak_extra_bytes": peak,
            "peak_extra_over_logits": peak / 1000,
            "mode": "measure",
            "threads": 2,
        },
    }


def _run(tmp_path: Path, payload: object | None, raw: str | None = None) -> subprocess.CompletedProcess:
    path = tmp_path / "bench.json"
    if raw is not None:
        path.write_text(raw)
    elif payload is not None:
        path.write_text(json.dumps(payload))
    return subprocess.run([sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True, check=False)


def test_prints_ratios_and_target_met(tmp_path):
    payload = {"benchmarks": [_bench("reference", 0.3, 5000), _bench("monai", 0.2, 4000), _bench("ours", 0.05, 1200)]}
    result = _run(tmp_path, payload)
    assert result.returncode == 0, result.stderr
    assert "speed monai/ours: 4.00x, reference/ours: 6.00x" in result.stdout
    assert "memory reference/ours: 4.17x" in result.stdout and "memory monai/ours: 3.33x" in result.stdout
    assert "MONAI one-hot composition: met" in result.stdout


def test_a_slow_run_is_reported_not_failed(tmp_path):
    """CI never fails on a wall-clock ratio: a missed target is printed and the exit status stays 0."""
    payload = {"benchmarks": [_bench("reference", 0.1, 5000), _bench("monai", 0.1, 4000), _bench("ours", 0.08, 1200)]}
    result = _run(tmp_path, payload)
    assert result.returncode == 0, result.stderr
    assert "speed monai/ours: 1.25x" in result.stdout and ": not met" in result.stdout


@pytest.mark.parametrize(
    "payload, raw, fragment",
    [
        (None, None, "not found"),
        (None, "{not json", "cannot read"),
        ([1, 2], None, "no 'benchmarks' list"),
        ({"benchmarks": [{"extra_info": {"impl": "ours"}}]}, None, "malformed"),
        ({"benchmarks": [_bench("ours", 0.1, 1)]}, None, "no benchmark group holds all"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, payload, raw, fragment):
    result = _run(tmp_path, payload, raw)
    assert result.returncode == 2
    assert fragment in result.stderr and result.stderr.count("\n") == 1
