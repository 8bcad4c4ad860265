"""Measure what a piece of torch code allocates, op by op (test helper).

``AllocationTracker`` is a TorchDispatchMode: every aten op's outputs are inspected; an output whose
storage is not one of the op's inputs' storages is a *fresh allocation*.  Fresh storages are
tracked live through weakref finalizers on every tensor that refers to them (views and the
``detach``-ed copies autograd saves are ops too, so they are seen), which gives the live bytes
and their peak.  Storages that existed before the mode started (the inputs) are never counted,
so ``peak_bytes`` is the extra memory the code needed.  Allocations made inside a kernel and
never returned (scratch of a reduction, say) are invisible: this measures tensors, not malloc.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


@dataclass(frozen=True)
class Allocation:
    """One fresh storage: producing op, tensor shape/dtype, numel and storage bytes."""

    op: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    numel: int
    nbytes: int


class AllocationTracker(TorchDispatchMode):
    """Records fresh allocations and peak live bytes of tensors created while active."""

    def __init__(self) -> None:
        super().__init__()
        self.allocations: list[Allocation] = []
        self.current_bytes = 0
        self.peak_bytes = 0
        self._live: dict[int, list[int]] = {}  # data_ptr -> [nbytes, live tensors]
        self._lock = threading.RLock()  # finalizers may run on any thread

    def _release(self, ptr: int) -> None:
        with self._lock:
            entry = self._live.get(ptr)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] == 0:
                self.current_bytes -= entry[0]
                del self._live[ptr]

    def record(self, func: Any, args: tuple, kwargs: dict | None, out: Any) -> None:
        """Account the outputs of one op."""
        in_ptrs = {
            t.untyped_storage().data_ptr()
            for t in tree_flatten((args, kwargs or {}))[0]
            if isinstance(t, torch.Tensor) and t.device.type != "meta"
        }
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            storage = t.untyped_storage()
            ptr, nbytes = storage.data_ptr(), storage.nbytes()
            if ptr == 0 or nbytes == 0:
                continue
            with self._lock:
                if ptr not in self._live:
                    if ptr in in_ptrs:
                        continue  # view / in-place / out= on a storage from before the mode
                    self._live[ptr] = [nbytes, 0]
                    self.current_bytes += nbytes
                    self.peak_bytes = max(self.peak_bytes, self.current_bytes)
                    self.allocations.append(Allocation(str(func), tuple(t.shape), t.dtype, t.numel(), nbytes))
                self._live[ptr][1] += 1
            weakref.finalize(t, self._release, ptr)

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        self.record(func, args, kwargs, out)
        return out

    def large(self, numel: int) -> list[Allocation]:
        """Fresh allocations holding at least ``numel`` elements."""
        with self._lock:
            return [a for a in self.allocations if a.numel >= numel]


def measure_fwd_bwd(fn: Any, *leaves: torch.Tensor) -> AllocationTracker:
    """Run ``fn()`` (returns a scalar loss) + backward under a tracker; grads of ``leaves`` are cleared after."""
    for leaf in leaves:
        leaf.grad = None
    tracker = AllocationTracker()
    with tracker:
        loss = fn()
        loss.backward()
        del loss
        for leaf in leaves:
            leaf.grad = None
    return tracker
