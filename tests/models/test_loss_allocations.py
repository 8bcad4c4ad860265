"""The loss's memory, op by op: no (B, C, *spatial) target, and forward + backward within 2x the logits.

Incident: sigmoid Dice+BCE written on a 14-channel one-hot label blew host RAM.  The tracker sees
every tensor created by an aten op during forward + backward (inside the loss's autograd Function
too).  The detector fails on any integer/bool tensor of >= B*C*spatial elements (a one-hot or
comparison target) and on a peak of extra live bytes above twice the logits (the gradient
included) plus the loss's (B, C)-sized statistics.  The one-hot reference and the plain MONAI
composition must be flagged, which shows the detector is a real check.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from monai.networks.utils import one_hot

sys.path.insert(0, str(Path(__file__).parent))
from losses_memtrack import AllocationTracker, measure_fwd_bwd  # noqa: E402
from losses_reference import reference_partial_loss  # noqa: E402

from cellcheck.models.losses import DeepSupervisionPartialLoss, PartialAnnotationLoss  # noqa: E402


def allowed_bytes(*logits: torch.Tensor) -> int:
    """Twice the logits, plus room for the (B, C) statistics and per-(sample, label) bins (a few KiB)."""
    small = sum(64 * 1024 + 256 * t.shape[0] * t.shape[1] * 8 for t in logits)
    return 2 * sum(t.numel() * t.element_size() for t in logits) + small


def assert_no_materialised_target(tracker: AllocationTracker, *logits: torch.Tensor) -> None:
    """Fail on a large integer/bool tensor or on extra memory above ``allowed_bytes``."""
    big = tracker.large(min(t.numel() for t in logits))
    not_float = [a for a in big if not a.dtype.is_floating_point]
    assert not not_float, f"integer/bool tensors of >= B*C*spatial elements were created: {not_float}"
    ratio = tracker.peak_bytes / sum(t.numel() * t.element_size() for t in logits)
    assert tracker.peak_bytes <= allowed_bytes(*logits), f"peak extra memory {ratio:.2f}x the logits: {big}"


def _inputs(b: int, c: int, size: int, dtype: torch.dtype = torch.float32):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(b, c, size, size, size, generator=gen).to(dtype).requires_grad_(True)
    labels = torch.randint(0, c + 1, (b, 1, size, size, size), generator=gen, dtype=torch.uint8)
    mask = torch.rand(b, c, generator=gen) < 0.7
    mask[0, 0] = True
    return logits, labels, mask


@pytest.mark.parametrize("squared_pred", [False, True])
@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_forward_backward_within_twice_the_logits(batch, dtype, squared_pred):
    logits, labels, mask = _inputs(2, 14, 24, dtype)
    loss = PartialAnnotationLoss(14, batch=batch, squared_pred=squared_pred)
    tracker = measure_fwd_bwd(lambda: loss(logits, labels, mask), logits)
    assert_no_materialised_target(tracker, logits)
    big = tracker.large(logits.numel())
    assert all(a.dtype == dtype for a in big), big  # element-wise work stays in the logits' dtype
    assert any(a.op.startswith("aten.empty_like") for a in big), "the gradient must be among the allocations"
    assert tracker.current_bytes == 0  # everything released once the gradient is dropped


def test_peak_memory_at_benchmark_shape_is_at_most_twice_the_logits():
    """The issue's bound at a real-sized volume (B=2, C=14, 64^3): the gradient and one buffer beside it."""
    logits, labels, mask = _inputs(2, 14, 64)
    tracker = measure_fwd_bwd(lambda: PartialAnnotationLoss(14)(logits, labels, mask), logits)
    logits_bytes = logits.numel() * logits.element_size()
    assert logits_bytes < tracker.peak_bytes <= allowed_bytes(logits), tracker.peak_bytes / logits_bytes


def test_deep_supervision_allocates_no_target():
    logits, labels, mask = _inputs(2, 14, 24)
    low = torch.randn(2, 14, 12, 12, 12, requires_grad=True)
    ds = DeepSupervisionPartialLoss(PartialAnnotationLoss(14))
    tracker = measure_fwd_bwd(lambda: ds([logits, low], labels, mask), logits, low)
    assert_no_materialised_target(tracker, logits, low)


def test_detector_flags_the_one_hot_reference():
    logits, labels, mask = _inputs(2, 14, 16)
    tracker = measure_fwd_bwd(lambda: reference_partial_loss(logits, labels, mask), logits)
    with pytest.raises(AssertionError, match="the logits"):
        assert_no_materialised_target(tracker, logits)
    assert tracker.peak_bytes > 3 * logits.numel() * logits.element_size()


def test_detector_flags_plain_monai_composition():
    logits, labels, mask = _inputs(2, 14, 16)
    dice = DiceLoss(sigmoid=True)

    def monai_loss() -> torch.Tensor:
        target = one_hot(labels.long(), num_classes=15)[:, 1:]
        return dice(logits, target) + F.binary_cross_entropy_with_logits(logits, target)

    tracker = measure_fwd_bwd(monai_loss, logits)
    with pytest.raises(AssertionError):
        assert_no_materialised_target(tracker, logits)


def test_detector_flags_a_bool_target():
    """A single bool (B, C, *spatial) tensor is enough to fail, even within the memory bound."""
    logits, labels, _ = _inputs(1, 3, 8)

    def sneaky() -> torch.Tensor:
        target = labels == torch.arange(1, 4).view(1, 3, 1, 1, 1)  # (B, C, *sp) bool
        return (logits * target).sum()

    tracker = measure_fwd_bwd(sneaky, logits)
    with pytest.raises(AssertionError, match="integer/bool"):
        assert_no_materialised_target(tracker, logits)


def test_the_vram_model_traces_this_loss():
    """cellcheck's fake-tensor step runs the trainer's loss: its loss phase costs about one logits buffer.

    A one-hot BCE stand-in (what the model used before) adds a float32 target and a float32 copy of
    the bf16 logits, four times the logits; this loss adds its one sigmoid buffer and label indices.
    """
    from cellcheck.memory import vram

    step = vram.track_step("segresnet", (64, 64, 64), 1, "bf16")
    logits_bytes = 14 * 64**3 * 2  # full-resolution bf16 output; the deep-supervision levels add 1/8, 1/64, ...
    extra = step.phase_peaks["loss"] - step.phase_peaks["forward"]
    assert 0 < extra <= 1.5 * logits_bytes, extra / logits_bytes
