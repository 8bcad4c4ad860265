"""Run independent chunk tasks on Python threads whose torch ops are single-threaded.

Why: the loss does a few hundred small, cache-sized ops per call.  With torch's OpenMP intra-op
parallelism every op is a parallel region that ends in a barrier, and on a small machine shared
with other processes (2-core CI, a data loader) a barrier waits for a descheduled thread: a 20 ms
loss took over a second.  Here each worker thread runs whole chunks with intra-op threads = 1
(no parallel regions, no barriers), the workers run concurrently because torch releases the GIL
inside ops, and a descheduled worker only delays its own chunk.

``torch.set_num_threads`` sets the calling thread's OpenMP thread count, but also a process-wide
default that threads adopt on their first torch op.  Workers therefore initialise, switch to
one thread, and the caller restores its own count, once, while the pool is created.

Work stays on the calling thread when it cannot move: non-CPU tensors, one allowed thread, or an
active Python dispatch / torch-function mode (FakeTensor, profilers, allocation trackers are
thread-local and would not see, or would break on, ops run elsewhere).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

__all__ = ["map_chunks", "worker_count"]

T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_pid = -1


# More workers than this mostly queue on the GIL (each chunk holds it for its ~25 op calls).
MAX_WORKERS = 8


def worker_count() -> int:
    """Worker threads for CPU chunks: the caller's torch intra-op thread count, 1..MAX_WORKERS."""
    return max(1, min(MAX_WORKERS, torch.get_num_threads()))


def _parallel_ok() -> bool:
    """True when no thread-local Python mode is active (it would not carry over to a worker)."""
    return torch._C._len_torch_dispatch_stack() == 0 and torch._C._len_torch_function_stack() == 0


def _call_in_worker(fn: Callable[[T], R], item: T) -> R:
    """Run one task on a worker; grad mode is thread-local, and chunk work never needs autograd."""
    with torch.no_grad():
        return fn(item)


def _init_worker(barrier: threading.Barrier) -> None:
    """Make this pool thread single-threaded for torch ops, then wait for the others."""
    torch.get_num_threads()  # finish this thread's lazy OpenMP set-up first ...
    torch.set_num_threads(1)  # ... so this per-thread setting sticks
    barrier.wait()


def _get_pool(size: int) -> ThreadPoolExecutor:
    """Process-wide pool of ``size`` single-threaded workers (rebuilt after a fork or a resize)."""
    global _pool, _pool_size, _pool_pid
    with _lock:
        if _pool is not None and _pool_size == size and _pool_pid == os.getpid():
            return _pool
        if _pool is not None and _pool_pid == os.getpid():
            _pool.shutdown(wait=True)
        caller_threads = torch.get_num_threads()
        pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="partial-loss")
        try:
            barrier = threading.Barrier(size + 1, timeout=60)
            # Each init task blocks on the barrier, so each submit starts a new thread: all `size`.
            inits = [pool.submit(_init_worker, barrier) for _ in range(size)]
            barrier.wait()
            for init in inits:
                init.result()
        except BaseException:
            pool.shutdown(wait=False)
            raise
        finally:
            torch.set_num_threads(caller_threads)  # undo the process-wide default the workers changed
        _pool, _pool_size, _pool_pid = pool, size, os.getpid()
        return pool


def map_chunks(fn: Callable[[T], R], items: Sequence[T], device: torch.device) -> list[R]:
    """[fn(item) for item in items] (fn must be thread-safe, no autograd); results in ``items`` order.

    CPU work runs on the worker pool when it can (see the module docstring), else inline.  The
    order of results, and so of any later reduction, does not depend on scheduling, which keeps
    the loss deterministic.
    """
    workers = worker_count()
    if device.type != "cpu" or workers <= 1 or len(items) <= 1 or not _parallel_ok():
        return [fn(item) for item in items]
    pool = _get_pool(workers)
    futures = [pool.submit(_call_in_worker, fn, item) for item in items]
    return [f.result() for f in futures]
