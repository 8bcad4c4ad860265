"""The CPU worker pool of trainer.losses: same numbers as inline, no leaked thread settings."""

from __future__ import annotations

import threading

import pytest
import torch

import trainer.losses._stats as stats_mod
import trainer.losses._workers as workers
from trainer.losses import PartialAnnotationLoss


def _run(parallel: bool, monkeypatch, dtype: torch.dtype = torch.float32):
    monkeypatch.setattr(workers, "_parallel_ok", lambda: parallel)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 5, 20, 21, 22, generator=gen).to(dtype).requires_grad_(True)
    labels = torch.randint(0, 6, (2, 1, 20, 21, 22), generator=gen, dtype=torch.int16)
    mask = torch.tensor([[1, 1, 0, 1, 1], [0, 1, 1, 1, 0]], dtype=torch.bool)
    loss = PartialAnnotationLoss(5)(x, labels, mask)
    loss.backward()
    return loss.detach(), x.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_workers_match_inline_and_are_deterministic(monkeypatch, dtype):
    monkeypatch.setattr(stats_mod, "DEFAULT_BLOCK", 5 * 2 * 500)  # ~19 chunks
    if workers.worker_count() < 2:
        monkeypatch.setattr(workers, "worker_count", lambda: 2)
    inline = _run(False, monkeypatch, dtype)
    pooled = _run(True, monkeypatch, dtype)
    again = _run(True, monkeypatch, dtype)
    for a, b, c in zip(inline, pooled, again):
        assert torch.equal(b, c)  # fixed chunking and reduction order: bitwise reproducible
        # inline ops may use several OpenMP threads, which can round sums differently
        torch.testing.assert_close(a.float(), b.float(), atol=1e-6, rtol=1e-3 if dtype == torch.bfloat16 else 1e-5)


def test_thread_settings_are_restored():
    before = torch.get_num_threads()
    workers._get_pool(max(2, before))
    assert torch.get_num_threads() == before
    seen: list[int] = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert seen == [before]  # a new thread still adopts the process default


def test_map_chunks_order_inline_fallback_and_errors(monkeypatch):
    monkeypatch.setattr(workers, "worker_count", lambda: 2)
    cpu = torch.device("cpu")
    assert workers.map_chunks(lambda i: i * i, list(range(10)), cpu) == [i * i for i in range(10)]
    names = workers.map_chunks(lambda _: threading.current_thread().name, [0, 1, 2, 3], cpu)
    assert all(n.startswith("partial-loss") for n in names)
    monkeypatch.setattr(workers, "_parallel_ok", lambda: False)
    names = workers.map_chunks(lambda _: threading.current_thread().name, [0, 1], cpu)
    assert names == [threading.current_thread().name] * 2
    monkeypatch.undo()

    def boom(i: int) -> int:
        if i == 2:
            raise ValueError("chunk 2 failed")
        return i

    monkeypatch.setattr(workers, "worker_count", lambda: 2)
    with pytest.raises(ValueError, match="chunk 2 failed"):
        workers.map_chunks(boom, [0, 1, 2, 3], cpu)


def test_workers_run_without_grad_and_single_threaded(monkeypatch):
    monkeypatch.setattr(workers, "worker_count", lambda: 2)
    state = workers.map_chunks(lambda _: (torch.is_grad_enabled(), torch.get_num_threads()), [0, 1], torch.device("cpu"))
    assert state == [(False, 1), (False, 1)]
