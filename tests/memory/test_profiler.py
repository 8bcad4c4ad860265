"""The profiler, for real: processes that allocate show up with their role; shared pages count once in PSS."""

import json
import subprocess
import sys

import pytest

from cellcheck.errors import CellcheckError
from cellcheck.memory.profiler import MemoryProfiler, profile_command, read_samples, summarize

MiB = 2**20
ALLOCATE = "import time; block = bytearray({mib} * 2**20); time.sleep({secs})"

# A parent maps 240 MiB of shared anonymous memory, touches it, forks two children that touch it too
# and sleep: each of the three has it all in RSS, but it exists once, so the PSS sum holds it once.
SHARED_FORK = """
import mmap, os, sys, time
size = 240 * 2**20
shared = mmap.mmap(-1, size, flags=mmap.MAP_SHARED)
for _ in range(240):
    shared.write(b"x" * 2**20)  # a MiB at a time: no private copy of the whole
pids = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        total = sum(shared[i] for i in range(0, size, 4096))  # touch every page: mapped in this child too
        time.sleep(1.5)
        os._exit(0)
    pids.append(pid)
for pid in pids:
    os.waitpid(pid, 0)
"""


def test_a_child_allocating_memory_shows_up(tmp_path):
    out = tmp_path / "memory.jsonl"
    with MemoryProfiler(out, interval_s=0.05) as prof:
        child = subprocess.Popen([sys.executable, "-c", ALLOCATE.format(mib=200, secs=0.8)])
        child.wait()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) >= 3 and lines[0]["event"] == "start" and lines[-1]["event"] == "stop"
    seen = [p for rec in lines for p in rec["processes"] if p["pid"] == child.pid]
    assert max(p["pss_bytes"] for p in seen) >= 200 * MiB and max(p["uss_bytes"] for p in seen) >= 200 * MiB
    assert {p["role"] for p in seen} == {"main"}  # exec'd, not forked: its own program
    summary = prof.summary()
    assert summary["peak"]["pss_bytes"] >= 200 * MiB + min(p["pss_bytes"] for rec in lines for p in rec["processes"]
                                                           if p["pid"] == prof.pid)
    assert all(rec["system"]["available_bytes"] > 0 and rec["total"]["pss_bytes"] > 0 for rec in lines)


def test_forked_workers_are_labelled_and_shared_pages_count_once(tmp_path):
    out = tmp_path / "memory.jsonl"
    status, summary = profile_command([sys.executable, "-c", SHARED_FORK], out, interval_s=0.05)
    assert status == 0
    samples = read_samples(out)
    busy = [s for s in samples if s["roles"]["worker"]["count"] == 2]
    assert busy, "the two forked children were never seen as workers"
    last = max(busy, key=lambda s: s["total"]["rss_bytes"])  # the children have touched every page by then
    assert last["roles"]["main"]["count"] == 1
    # every process maps the 240 MiB: RSS sums it three times, PSS once (plus the interpreters)
    assert last["total"]["rss_bytes"] >= 3 * 240 * MiB
    assert 240 * MiB <= last["total"]["pss_bytes"] < 1.5 * 240 * MiB
    assert summary["peak"]["pss_bytes"] < 1.5 * 240 * MiB


def test_no_gpu_gives_null_fields_and_a_reason_not_an_exception(tmp_path):
    prof = MemoryProfiler(None, interval_s=0.05)
    with prof:
        record = prof.mark("epoch 1")
    assert record["event"] == "epoch 1" and record["processes"][0]["role"] == "main"
    summary = prof.summary()
    if record["gpus"] is None:  # this machine: no NVIDIA driver
        assert summary["gpus"] is None and summary["gpu_note"]
    else:  # a GPU node fills them in
        assert all(g["total_bytes"] > 0 and g["used_bytes"] >= 0 for g in record["gpus"])
        assert summary["gpus"] and summary["gpu_note"] is None


def test_profile_command_returns_the_child_status(tmp_path):
    out = tmp_path / "m.jsonl"
    status, summary = profile_command([sys.executable, "-c", ALLOCATE.format(mib=100, secs=0.5) + "; raise SystemExit(3)"],
                                      out, interval_s=0.05)
    assert status == 3
    assert summary["samples"] >= 2 and summary["peak"]["pss_bytes"] >= 100 * MiB
    assert summary["peak_process"]["role"] == "main" and summary["peak_process"]["pss_bytes"] >= 100 * MiB
    assert out.read_text().count("\n") == summary["samples"]
    assert summarize(read_samples(out))["peak"] == summary["peak"]  # the file gives back the live summary


def test_a_line_cut_short_by_a_kill_is_skipped_and_a_foreign_file_is_refused(tmp_path):
    out = tmp_path / "m.jsonl"
    profile_command([sys.executable, "-c", "pass"], out, interval_s=0.05)
    n = len(out.read_text().splitlines())
    with out.open("a") as fh:
        fh.write('{"t": 1, "elapsed_s": 9, "processes": [{"pid"')  # the job died mid-write
    assert len(read_samples(out)) == n
    foreign = tmp_path / "metrics.jsonl"
    foreign.write_text('{"epoch": 0, "train_loss": 0.5}\n')
    with pytest.raises(CellcheckError, match="no memory samples"):
        read_samples(foreign)
    with pytest.raises(CellcheckError, match="no such file"):
        read_samples(tmp_path / "missing.jsonl")
