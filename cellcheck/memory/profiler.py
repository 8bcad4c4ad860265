"""Sample the memory a training job really uses: every process of its tree, the host, each GPU.

One JSON object per line (memory.jsonl), so a killed job still leaves every sample written so far:

    {"t": 1764060000.12, "elapsed_s": 3.0, "event": null,
     "processes": [{"pid": 4242, "ppid": 4200, "role": "main", "name": "python",
                    "rss_bytes": ..., "uss_bytes": ..., "pss_bytes": ...}, ...],
     "total": {"rss_bytes": ..., "uss_bytes": ..., "pss_bytes": ..., "unmapped_shm_bytes": ...,
               "footprint_bytes": ...},
     "roles": {"main": {"count": 1, "pss_bytes": ...}, "worker": {"count": 4, "pss_bytes": ...}},
     "system": {"available_bytes": ..., "total_bytes": ...},
     "gpus": [{"index": 0, "name": "NVIDIA L40S", "used_bytes": ..., "total_bytes": ...,
               "utilization_pct": 97}] | null}

Why PSS: DataLoader workers are forked copies of their rank and hand batches over in shared memory,
so RSS counts the same page in every process that maps it and the sum over a tree overstates what
the job is charged. PSS divides each shared page among its sharers: the sum of PSS over the tree
counts every page once. USS is what killing one process would free. A batch a worker has finished
but the main process has not yet taken is a /dev/shm file held only by a descriptor, in no process's
PSS: `unmapped_shm_bytes` counts those, and `footprint_bytes` = PSS sum + unmapped shm is the
memory the tree really holds (what its cgroup is charged, page cache aside).

Roles come from parentage: the root and any program the tree exec'd (a torchrun rank, the Python a
shell started) are "main"; a fork of a process with the same command line, or a multiprocessing
spawn/forkserver child, is a "worker". `gpus` is null when pynvml is missing, no driver answers or
there is no GPU: never an exception. Bytes throughout.

    with MemoryProfiler("memory.jsonl", interval_s=1.0) as prof:   # in process, from a training loop
        ...
        prof.mark("epoch 1")
    prof.summary()["peak"]["pss_bytes"]
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import IO, Any, Iterable

import psutil

ROLES = ("main", "worker")
_GONE = (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess)


class Nvml:
    """pynvml (the nvidia-ml-py package) if it loads and finds a GPU; `reason` says why not otherwise."""

    def __init__(self) -> None:
        self.nvml: Any = None
        self.count = 0
        self.reason: str | None = None
        try:
            import pynvml

            pynvml.nvmlInit()
        except ImportError:
            self.reason = "pynvml (nvidia-ml-py) is not installed"
            return
        except Exception as exc:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...: no NVIDIA driver here
            self.reason = f"NVML did not initialise ({exc})"
            return
        self.nvml = pynvml
        try:
            self.count = int(pynvml.nvmlDeviceGetCount())
        except Exception as exc:
            self.reason = f"NVML found no device ({exc})"
        if self.count == 0 and self.reason is None:
            self.reason = "NVML reports no GPU"

    def sample(self) -> list[dict[str, Any]] | None:
        """Used and total bytes and utilization of each GPU, or None when there is none to ask."""
        if self.nvml is None or self.count == 0:
            return None
        nv, out = self.nvml, []
        try:
            for i in range(self.count):
                handle = nv.nvmlDeviceGetHandleByIndex(i)
                info = nv.nvmlDeviceGetMemoryInfo(handle)
                name = nv.nvmlDeviceGetName(handle)
                try:
                    util: int | None = int(nv.nvmlDeviceGetUtilizationRates(handle).gpu)
                except Exception:  # not supported on every card (MIG slices)
                    util = None
                out.append({"index": i, "name": name.decode() if isinstance(name, bytes) else str(name),
                            "used_bytes": int(info.used), "total_bytes": int(info.total), "utilization_pct": util})
        except Exception:
            return None
        return out

    def close(self) -> None:
        if self.nvml is not None:
            try:
                self.nvml.nvmlShutdown()
            except Exception:
                pass
            self.nvml = None


def _is_worker(cmdline: list[str], parent_cmdline: list[str] | None) -> bool:
    """A forked copy of its parent (same command line) or a multiprocessing spawn/forkserver child."""
    if parent_cmdline is not None and cmdline == parent_cmdline:
        return True
    return any("multiprocessing" in part for part in cmdline[1:3])


def _shm_files(pid: int) -> tuple[dict[int, int], set[int]]:
    """Shared-memory files (/dev/shm) a process holds open, {inode: allocated bytes}, and the inodes it maps.

    Linux only (reads /proc); elsewhere, or for a process that is gone, nothing.
    """
    held: dict[int, int] = {}
    mapped: set[int] = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("/dev/shm/"):
                    st = os.stat(f"/proc/{pid}/fd/{fd}")
                    held[st.st_ino] = st.st_blocks * 512
            except OSError:  # closed meanwhile
                continue
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and parts[5].startswith("/dev/shm/"):
                    mapped.add(int(parts[4]))
    except OSError:
        pass
    return held, mapped


def unmapped_shm_bytes(pids: Iterable[int]) -> int:
    """Bytes of /dev/shm files the processes hold open but none of them maps.

    A DataLoader worker hands a finished batch over as a shared-memory file descriptor; until the
    main process takes it off the queue and maps it, the batch is in memory (charged to the job's
    cgroup as shmem) but in no process's RSS or PSS. With a slow training step every prefetched
    batch sits there, so a PSS sum alone misses up to workers x prefetch batches.
    """
    held: dict[int, int] = {}
    mapped: set[int] = set()
    for pid in pids:
        h, m = _shm_files(pid)
        held.update(h)
        mapped |= m
    return sum(size for ino, size in held.items() if ino not in mapped)


def sample_tree(root: psutil.Process) -> list[dict[str, Any]]:
    """RSS, USS and PSS of `root` and every descendant alive now, each labelled main or worker."""
    try:
        procs = [root, *root.children(recursive=True)]
    except _GONE:
        procs = [root]
    cmdlines: dict[int, list[str] | None] = {}
    for p in procs:
        try:
            cmdlines[p.pid] = p.cmdline()
        except _GONE:
            cmdlines[p.pid] = None
    out = []
    for p in procs:
        try:
            mem = p.memory_full_info()  # /proc/PID/smaps_rollup: a few ms for a torch process (page-table walk)
            ppid, name = p.ppid(), p.name()
        except _GONE:
            continue
        cmd = cmdlines.get(p.pid) or []
        role = "main" if p.pid == root.pid or not _is_worker(cmd, cmdlines.get(ppid)) else "worker"
        out.append({"pid": p.pid, "ppid": ppid, "role": role, "name": name, "rss_bytes": int(mem.rss),
                    "uss_bytes": int(mem.uss), "pss_bytes": int(mem.pss)})
    return out


def _sum(processes: Iterable[dict[str, Any]], key: str) -> int:
    return sum(p[key] for p in processes)


class MemoryProfiler:
    """Samples the process tree of `pid` (default: this process), the host and the GPUs every `interval_s` s.

    A context manager (start on enter, stop and write a last sample on exit); `sample()` takes one
    sample by hand; `mark(text)` writes a sample tagged with an event (epoch boundaries, validation).
    `path` None keeps the samples in memory only (`records`). `summary()` gives the peaks so far.
    """

    def __init__(self, path: str | os.PathLike[str] | None = "memory.jsonl", interval_s: float = 1.0,
                 pid: int | None = None, gpus: bool = True, keep_records: bool = True) -> None:
        self.path = None if path is None else Path(path)
        self.interval_s = max(0.01, float(interval_s))
        self.pid = pid or os.getpid()
        self.keep_records = keep_records
        self.records: list[dict[str, Any]] = []
        self.peaks = PeakTracker()
        self.gpu_note: str | None = None
        self._want_gpus = gpus
        self._nvml: Nvml | None = None
        self._proc = psutil.Process(self.pid)
        self._file: IO[str] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.time()

    def sample(self, event: str | None = None) -> dict[str, Any]:
        """Take one sample now, write it as a JSON line and return it."""
        now = time.time()
        processes = sample_tree(self._proc)
        vm = psutil.virtual_memory()
        total = {k: _sum(processes, k) for k in ("rss_bytes", "uss_bytes", "pss_bytes")}
        total["unmapped_shm_bytes"] = unmapped_shm_bytes(p["pid"] for p in processes)
        total["footprint_bytes"] = total["pss_bytes"] + total["unmapped_shm_bytes"]
        record = {
            "t": round(now, 3), "elapsed_s": round(now - self._t0, 3), "event": event, "processes": processes,
            "total": total,
            "roles": {role: {"count": len(ps), "pss_bytes": _sum(ps, "pss_bytes"), "rss_bytes": _sum(ps, "rss_bytes")}
                      for role in ROLES for ps in [[p for p in processes if p["role"] == role]]},
            "system": {"available_bytes": int(vm.available), "total_bytes": int(vm.total)},
            "gpus": self._nvml.sample() if self._nvml is not None else None,
        }
        with self._lock:
            self.peaks.add(record)
            if self.keep_records:
                self.records.append(record)
            if self._file is not None:
                self._file.write(json.dumps(record) + "\n")
                self._file.flush()
        return record

    def mark(self, event: str) -> dict[str, Any]:
        """Write a sample tagged with `event` (e.g. "epoch 3", "validation")."""
        return self.sample(event)

    def start(self) -> "MemoryProfiler":
        """Open the output, take a first sample and start the sampling thread."""
        if self._thread is not None:
            return self
        if self._want_gpus and self._nvml is None:
            self._nvml = Nvml()
            self.gpu_note = self._nvml.reason
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        self._t0 = time.time()
        self._stop.clear()
        self.sample("start")
        self._thread = threading.Thread(target=self._run, name="cellcheck-memory-profiler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling, write a last sample, close the output."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        try:
            self.sample("stop")
        except psutil.Error:  # the profiled process is gone: its last sample was the one before
            pass
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._nvml is not None:
            self._nvml.close()
            self._nvml = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sample()
            except psutil.NoSuchProcess:
                return
            except Exception:  # a sampling hiccup must never take the training job down
                continue

    def __enter__(self) -> "MemoryProfiler":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def summary(self) -> dict[str, Any]:
        """Peaks so far (see `PeakTracker.summary`), with why GPUs are missing when they are."""
        with self._lock:
            return {**self.peaks.summary(), "gpu_note": self.gpu_note if self._want_gpus else "GPUs not sampled"}


class PeakTracker:
    """Running peaks over samples: of the tree's PSS (and its split by role), of any one process, of each GPU."""

    def __init__(self) -> None:
        self.samples = 0
        self.peak: dict[str, Any] | None = None
        self.peak_footprint: dict[str, Any] | None = None
        self.peak_process: dict[str, Any] | None = None
        self.min_available_bytes: int | None = None
        self.gpus: dict[int, dict[str, Any]] = {}

    def add(self, record: dict[str, Any]) -> None:
        self.samples += 1
        if not record["processes"]:
            return
        total = record["total"]
        at = {**total, "elapsed_s": record["elapsed_s"], "processes": len(record["processes"]),
              "roles": {r: v["pss_bytes"] for r, v in record["roles"].items()}}
        if self.peak is None or total["pss_bytes"] > self.peak["pss_bytes"]:
            self.peak = at
        if self.peak_footprint is None or total["footprint_bytes"] > self.peak_footprint["footprint_bytes"]:
            self.peak_footprint = at
        for p in record["processes"]:
            if self.peak_process is None or p["pss_bytes"] > self.peak_process["pss_bytes"]:
                self.peak_process = {k: p[k] for k in ("pid", "role", "name", "pss_bytes", "uss_bytes", "rss_bytes")}
                self.peak_process["elapsed_s"] = record["elapsed_s"]
        available = record["system"]["available_bytes"]
        self.min_available_bytes = available if self.min_available_bytes is None else min(self.min_available_bytes,
                                                                                         available)
        for g in record.get("gpus") or []:
            seen = self.gpus.setdefault(g["index"], {"name": g["name"], "total_bytes": g["total_bytes"],
                                                     "peak_used_bytes": 0, "peak_utilization_pct": None})
            seen["peak_used_bytes"] = max(seen["peak_used_bytes"], g["used_bytes"])
            if g.get("utilization_pct") is not None:
                seen["peak_utilization_pct"] = max(seen["peak_utilization_pct"] or 0, g["utilization_pct"])

    def summary(self) -> dict[str, Any]:
        """{"samples", "peak": the sample of highest PSS sum (its totals, elapsed_s, PSS by role),
        "peak_footprint": the same for PSS + unmapped shm, "peak_process", "min_available_bytes",
        "gpus": {index: {name, total_bytes, peak_used_bytes, peak_utilization_pct}} | None}."""
        return {"samples": self.samples, "peak": self.peak, "peak_footprint": self.peak_footprint,
                "peak_process": self.peak_process,
                "min_available_bytes": self.min_available_bytes,
                "gpus": {str(k): v for k, v in sorted(self.gpus.items())} or None}


def read_samples(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The samples of a memory.jsonl file; a line cut short by a killed job is skipped."""
    from cellcheck.errors import CellcheckError

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CellcheckError(f"{path}: no such file; write one with cellcheck profile --output {path} -- CMD") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CellcheckError(f"{path}: cannot read it ({exc})") from None
    samples = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("processes"), list) and "elapsed_s" in record:
            samples.append(record)
    if not samples:
        raise CellcheckError(f"{path}: no memory samples in it; is it a file written by cellcheck profile?")
    return samples


def summarize(samples: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The peaks of samples read back from a file (as `MemoryProfiler.summary` gives them live)."""
    tracker = PeakTracker()
    for record in samples:
        tracker.add(record)
    return tracker.summary()


def profile_command(argv: list[str], path: str | os.PathLike[str] = "memory.jsonl",
                    interval_s: float = 1.0) -> tuple[int, dict[str, Any]]:
    """Run `argv` as a child process under the profiler; return its exit status and the summary."""
    import subprocess

    from cellcheck.errors import CellcheckError

    try:
        child = subprocess.Popen(argv)
    except OSError as exc:
        raise CellcheckError(f"cannot run {argv[0]!r}: {exc.strerror or exc}") from None
    prof = MemoryProfiler(path, interval_s=interval_s, pid=child.pid, keep_records=False)
    try:
        with prof:
            while child.poll() is None:
                time.sleep(min(0.02, interval_s))
    except KeyboardInterrupt:  # Ctrl-C reached the child too; report what was sampled
        child.wait()
    return child.returncode, prof.summary()
