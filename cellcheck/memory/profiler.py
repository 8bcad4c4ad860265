"""Sample the memory a training job really uses: host RSS of a process and its children, GPU memory per device.

One JSON object per line (memory.jsonl), so a killed job still leaves every sample written so far:

    {"t": 1764060000.12, "elapsed_s": 3.0, "pid": 4242, "rss_bytes": ..., "children": [{"pid": ...,
     "name": "python", "rss_bytes": ...}], "total_rss_bytes": ..., "gpus": [{"index": 0, "name": "NVIDIA L40S",
     "used_bytes": ..., "total_bytes": ...}] | null, "event": null}

`gpus` is null when pynvml is missing, no driver answers or there is no GPU: never an exception.
RSS counts a shared page in every process that touched it, so the sum over processes can exceed
what the job's cgroup is charged (DataLoader batches live in shared memory). Bytes throughout.

    with MemoryProfiler("memory.jsonl", interval_s=1.0) as prof:   # from a training loop
        ...
        prof.mark("epoch 1")
    prof.peak_total_rss_bytes
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import IO, Any

import psutil


class _Nvml:
    """pynvml, if it can be imported and initialised; otherwise every query returns None."""

    def __init__(self) -> None:
        self.nvml: Any = None
        try:
            import pynvml  # the nvidia-ml-py package

            pynvml.nvmlInit()
            self.count = pynvml.nvmlDeviceGetCount()
            self.nvml = pynvml
        except Exception:  # ImportError, NVMLError (no driver, no GPU): the profiler goes on without GPUs
            self.nvml = None
            self.count = 0

    def sample(self) -> list[dict[str, Any]] | None:
        """Used and total bytes of each GPU, or None when there is none to ask."""
        if self.nvml is None or self.count == 0:
            return None
        out = []
        try:
            for i in range(self.count):
                handle = self.nvml.nvmlDeviceGetHandleByIndex(i)
                info = self.nvml.nvmlDeviceGetMemoryInfo(handle)
                name = self.nvml.nvmlDeviceGetName(handle)
                out.append({"index": i, "name": name.decode() if isinstance(name, bytes) else str(name),
                            "used_bytes": int(info.used), "total_bytes": int(info.total)})
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


def _rss(proc: psutil.Process) -> int | None:
    try:
        return int(proc.memory_info().rss)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


class MemoryProfiler:
    """Samples RSS of `pid` (default: this process) and its children, and GPU memory, every `interval_s` seconds.

    A context manager (start on enter, stop and write a last sample on exit); `sample()` takes one
    sample by hand; `mark(text)` writes a sample tagged with an event (epoch boundaries, validation).
    `path` None keeps the samples in memory only (`records`).
    """

    def __init__(self, path: str | os.PathLike[str] | None = "memory.jsonl", interval_s: float = 1.0,
                 pid: int | None = None, include_children: bool = True, gpus: bool = True,
                 keep_records: bool = True) -> None:
        self.path = None if path is None else Path(path)
        self.interval_s = max(0.01, float(interval_s))
        self.pid = pid or os.getpid()
        self.include_children = include_children
        self.keep_records = keep_records
        self.records: list[dict[str, Any]] = []
        self.n_samples = 0
        self.peak_total_rss_bytes = 0
        self.peak_gpu_used_bytes: dict[int, int] = {}
        self._want_gpus = gpus
        self._nvml: _Nvml | None = None
        self._proc = psutil.Process(self.pid)
        self._file: IO[str] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.time()

    # -- sampling ---------------------------------------------------------------------------------------

    def sample(self, event: str | None = None) -> dict[str, Any]:
        """Take one sample now, write it as a JSON line and return it (RSS and GPU memory in bytes)."""
        now = time.time()
        rss = _rss(self._proc)
        children = []
        if self.include_children:
            try:
                kids = self._proc.children(recursive=True)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                kids = []
            for child in kids:
                child_rss = _rss(child)
                if child_rss is None:
                    continue
                try:
                    name = child.name()
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    name = None
                children.append({"pid": child.pid, "name": name, "rss_bytes": child_rss})
        total = (rss or 0) + sum(c["rss_bytes"] for c in children)
        gpus = self._nvml.sample() if self._nvml is not None else None
        record = {"t": round(now, 3), "elapsed_s": round(now - self._t0, 3), "pid": self.pid, "rss_bytes": rss,
                  "children": children, "total_rss_bytes": total, "gpus": gpus, "event": event}
        with self._lock:
            self.n_samples += 1
            self.peak_total_rss_bytes = max(self.peak_total_rss_bytes, total)
            for g in gpus or []:
                self.peak_gpu_used_bytes[g["index"]] = max(self.peak_gpu_used_bytes.get(g["index"], 0),
                                                            g["used_bytes"])
            if self.keep_records:
                self.records.append(record)
            if self._file is not None:
                self._file.write(json.dumps(record) + "\n")
                self._file.flush()
        return record

    def mark(self, event: str) -> dict[str, Any]:
        """Write a sample tagged with `event` (e.g. "epoch 3", "validation")."""
        return self.sample(event)

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> "MemoryProfiler":
        """Open the output, take a first sample and start the sampling thread."""
        if self._thread is not None:
            return self
        if self._want_gpus and self._nvml is None:
            self._nvml = _Nvml()
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
        except psutil.Error:
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
        """Peaks so far: total RSS of the process tree and GPU memory used per device (bytes)."""
        return {"samples": self.n_samples, "peak_total_rss_bytes": self.peak_total_rss_bytes,
                "peak_gpu_used_bytes": {str(k): v for k, v in sorted(self.peak_gpu_used_bytes.items())} or None}


def profile_command(argv: list[str], path: str | os.PathLike[str] = "memory.jsonl",
                    interval_s: float = 1.0) -> tuple[int, dict[str, Any]]:
    """Run `argv` as a child process under the profiler; return its exit status and the peaks."""
    import subprocess

    try:
        child = subprocess.Popen(argv)
    except OSError as exc:
        from cellcheck.errors import CellcheckError

        raise CellcheckError(f"cannot run {argv[0]!r}: {exc.strerror or exc}") from None
    prof = MemoryProfiler(path, interval_s=interval_s, pid=child.pid, keep_records=False)
    with prof:
        while child.poll() is None:
            time.sleep(min(0.05, interval_s))
    return child.returncode, prof.summary()
