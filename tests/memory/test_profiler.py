"""The profiler, for real: a child process that allocates memory shows up; no GPU means null, not an error."""

import json
import subprocess
import sys

from cellcheck.memory.profiler import MemoryProfiler, profile_command

MiB = 2**20
ALLOCATE = "import time; block = bytearray({mib} * 2**20); time.sleep({secs})"


def test_a_child_allocating_memory_shows_up(tmp_path):
    out = tmp_path / "memory.jsonl"
    with MemoryProfiler(out, interval_s=0.05) as prof:
        child = subprocess.Popen([sys.executable, "-c", ALLOCATE.format(mib=200, secs=0.8)])
        child.wait()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) >= 3 and lines[0]["event"] == "start" and lines[-1]["event"] == "stop"
    child_rss = max((c["rss_bytes"] for rec in lines for c in rec["children"] if c["pid"] == child.pid), default=0)
    assert child_rss >= 200 * MiB
    assert prof.peak_total_rss_bytes >= child_rss
    assert all(set(rec) >= {"t", "rss_bytes", "children", "total_rss_bytes", "gpus"} for rec in lines)


def test_no_gpu_gives_null_fields_not_an_exception(tmp_path):
    prof = MemoryProfiler(None, interval_s=0.05)
    with prof:
        record = prof.mark("epoch 1")
    assert record["event"] == "epoch 1" and record["rss_bytes"] > 0
    summary = prof.summary()
    # this machine has no NVIDIA driver; on a GPU node the same code fills these in
    if record["gpus"] is None:
        assert summary["peak_gpu_used_bytes"] is None
    else:
        assert all(g["total_bytes"] > 0 for g in record["gpus"])


def test_profile_command_returns_the_child_status(tmp_path):
    out = tmp_path / "m.jsonl"
    status, summary = profile_command([sys.executable, "-c", ALLOCATE.format(mib=100, secs=0.5) + "; raise SystemExit(3)"],
                                      out, interval_s=0.05)
    assert status == 3
    assert summary["samples"] >= 2 and summary["peak_total_rss_bytes"] >= 100 * MiB
    assert out.read_text().count("\n") == summary["samples"]
