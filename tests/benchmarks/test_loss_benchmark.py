"""Forward+backward time and extra memory of three partial-annotation loss implementations.

Side by side in one pytest-benchmark group (B=2, C=14, fp32 logits on CPU, uint8 labels, every
class annotated so the masked losses do all the work the unmasked one does):

* ``reference`` - the test oracle: one-hot + MONAI DiceLoss + BCE, masked (tests/models);
* ``monai``     - the plain MONAI composition the first run used, unmasked:
                  one_hot -> DiceLoss(sigmoid=True) + binary_cross_entropy_with_logits;
* ``ours``      - ``cellcheck.models.losses.PartialAnnotationLoss``.

One-hot conversion is inside the timed region of the first two: ours takes integer labels.
Extra memory is measured once per implementation outside the timing, with the dispatch-mode
tracker of tests/models/losses_memtrack.py (peak live bytes of tensors created during
forward+backward, inputs excluded, the gradient included) and stored in ``extra_info``.
Wall-clock numbers are only comparable on an otherwise idle machine: other CPU-heavy processes
slow all three, so CI prints the ratios and never fails on them.

Sizes: 96^3 by default (what CI measures); 64^3 with CELLCHECK_BENCH_QUICK=1.  Run inside the
normal test suite (no --benchmark-only / --benchmark-json, no CELLCHECK_BENCH_QUICK) it only
smoke-tests the three at 16^3 once, so ``pytest`` stays fast.  CI (scripts/test.sh):

    CELLCHECK_BENCH=1 python -m pytest tests/benchmarks/test_loss_benchmark.py \
        --benchmark-only --benchmark-json=PATH
    python tests/benchmarks/check_loss_ratio.py PATH
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from monai.networks.utils import one_hot

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from losses_memtrack import measure_fwd_bwd  # noqa: E402
from losses_reference import reference_partial_loss  # noqa: E402

from cellcheck.models.losses import PartialAnnotationLoss  # noqa: E402

B, C = 2, 14
QUICK = os.environ.get("CELLCHECK_BENCH_QUICK", "") not in ("", "0")
FULL_SIZE = 64 if QUICK else 96
SMOKE_SIZE = 16


def _measuring(config: pytest.Config) -> bool:
    """True when benchmarks were asked for explicitly; otherwise run the cheap smoke version."""
    asked = config.getoption("benchmark_only", False) or config.getoption("benchmark_json", None) is not None
    return bool(asked or QUICK or os.environ.get("CELLCHECK_BENCH", "") not in ("", "0"))


def _inputs(size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(B, C, size, size, size, generator=gen).requires_grad_(True)
    labels = torch.randint(0, C + 1, (B, 1, size, size, size), generator=gen, dtype=torch.uint8)
    mask = torch.ones(B, C, dtype=torch.bool)
    return logits, labels, mask


def _make(impl: str, logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> Callable[[], torch.Tensor]:
    """Closure computing the loss (forward only) for one implementation."""
    if impl == "reference":
        return lambda: reference_partial_loss(logits, labels, mask)
    if impl == "monai":
        dice = DiceLoss(sigmoid=True)

        def monai_loss() -> torch.Tensor:
            target = one_hot(labels.long(), num_classes=C + 1)[:, 1:]
            return dice(logits, target) + F.binary_cross_entropy_with_logits(logits, target)

        return monai_loss
    ours = PartialAnnotationLoss(C)
    return lambda: ours(logits, labels, mask)


@pytest.mark.parametrize("impl", ["reference", "monai", "ours"])
def test_loss_fwd_bwd(benchmark, request, impl: str) -> None:
    measuring = _measuring(request.config)
    size = FULL_SIZE if measuring else SMOKE_SIZE
    benchmark.group = f"partial-loss B={B} C={C} {size}^3 fp32"
    logits, labels, mask = _inputs(size)
    loss_fn = _make(impl, logits, labels, mask)

    def fwd_bwd() -> None:
        logits.grad = None
        loss_fn().backward()

    tracker = measure_fwd_bwd(loss_fn, logits)
    logits_bytes = logits.numel() * logits.element_size()
    benchmark.extra_info.update(
        impl=impl,
        size=size,
        batch=B,
        classes=C,
        mode="measure" if measuring else "smoke",
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        logits_bytes=logits_bytes,
        peak_extra_bytes=tracker.peak_bytes,
        peak_extra_over_logits=tracker.peak_bytes / logits_bytes,
        large_allocations=len(tracker.large(logits.numel())),
    )
    if measuring:
        rounds = 10 if impl == "ours" else (5 if size >= 96 else 8)
        benchmark.pedantic(fwd_bwd, rounds=rounds, iterations=1, warmup_rounds=1)
    else:
        benchmark.pedantic(fwd_bwd, rounds=1, iterations=1)
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
