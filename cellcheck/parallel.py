"""Cases in parallel across processes, results in input order, a progress bar only on a terminal."""

from __future__ import annotations

import multiprocessing as mp
import sys
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from typing import Callable, Iterator, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_TASK: Callable | None = None  # what forked workers run: set before the pool forks them


def _run(item):
    return _TASK(item)


def map_cases(fn: Callable[[T], R], items: Sequence[T], jobs: int = 1, progress: bool = False, what: str = "cases",
              verb: str = "auditing") -> Iterator[R]:
    """`fn` over `items` on `jobs` processes (in this process when jobs == 1 or there is one item)."""
    bar = _progress(len(items), f"{verb} {what}") if progress else nullcontext(None)
    with bar as advance:
        if jobs <= 1 or len(items) <= 1:
            for item in items:
                result = fn(item)
                if advance:
                    advance()
                yield result
            return
        # fork is cheap and safe here: zarr resets its event loop in forked children. Forked workers inherit
        # `fn` (and whatever it holds: a datalist, an index of stores) instead of unpickling it per case.
        fork = "fork" in mp.get_all_start_methods()
        global _TASK
        _TASK = fn
        try:
            with ProcessPoolExecutor(max_workers=min(jobs, len(items)),
                                     mp_context=mp.get_context("fork") if fork else None) as pool:
                # small cases go a few to a message; every case alone while there are few
                chunk = max(1, min(8, len(items) // (jobs * 32)))
                for result in pool.map(_run if fork else fn, items, chunksize=chunk):
                    if advance:
                        advance()
                    yield result
        finally:
            _TASK = None


class _progress:
    """A rich progress bar on stderr; a no-op when stderr is not a terminal."""

    def __init__(self, total: int, description: str) -> None:
        self.total, self.description, self._bar = total, description, None

    def __enter__(self):
        if not sys.stderr.isatty():
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        from rich.console import Console

        self._bar = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                             TimeRemainingColumn(), console=Console(stderr=True), transient=True)
        self._bar.__enter__()
        task = self._bar.add_task(self.description, total=self.total)
        return lambda: self._bar.advance(task)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
