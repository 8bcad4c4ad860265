"""The loss must not materialise a (B, C, *spatial) target: checked op by op with a TorchDispatchMode.

Incident: sigmoid Dice+BCE written on a 14-channel one-hot label blew host RAM.  The tracker sees
every tensor created by an aten op during forward + backward; the detector allows the logits-sized
gradient and at most one logits-sized saved buffer, nothing else of >= B*C*spatial elements, and
no integer/bool tensor that large.  The one-hot reference and the plain MONAI composition must be
flagged, which shows the detector is a real check.
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

import trainer.losses._stats as stats_mod  # noqa: E402
from trainer.losses import DeepSupervisionPartialLoss, PartialAnnotationLoss  # noqa: E402


def assert_no_materialised_target(tracker: AllocationTracker, logits: torch.Tensor) -> None:
    """Fail if anything but the gradient (+ at most one saved buffer) reached logits' element count."""
    big = tracker.large(logits.numel())
    not_float = [a for a in big if not a.dtype.is_floating_point]
    assert not not_float, f"integer/bool tensors of >= B*C*spatial elements were created: {not_float}"
    assert len(big) <= 2, f"{len(big)} tensors of >= B*C*spatial elements were created: {big}"


def _inputs(b: int, c: int, size: int, dtype: torch.dtype = torch.float32):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(b, c, size, size, size, generator=gen).to(dtype).requires_grad_(True)
    labels = torch.randint(0, c + 1, (b, 1, size, size, size), generator=gen, dtype=torch.uint8)
    mask = torch.rand(b, c, generator=gen) < 0.7
    mask[0, 0] = True
    return logits, labels, mask


@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_ours_allocates_only_the_gradient(batch, dtype):
    logits, labels, mask = _inputs(2, 14, 24, dtype)
    tracker = measure_fwd_bwd(lambda: PartialAnnotationLoss(14, batch=batch)(logits, labels, mask), logits)
    assert_no_materialised_target(tracker, logits)
    big = tracker.large(logits.numel())
    # Stricter than the rule above: this implementation keeps no logits-sized buffer at all.
    assert len(big) == 1 and big[0].dtype == dtype and big[0].numel == logits.numel(), big
    assert tracker.current_bytes == 0  # everything released once the gradient is dropped


def test_ours_peak_memory_is_about_one_gradient(monkeypatch):
    """Peak extra live bytes during fwd+bwd: the gradient + p at the label channel (1/C) + scratch."""
    logits, labels, mask = _inputs(2, 14, 32)
    logits_bytes = logits.numel() * logits.element_size()
    monkeypatch.setattr(stats_mod, "DEFAULT_BLOCK", 1 << 15)  # scratch small relative to this volume
    tracker = measure_fwd_bwd(lambda: PartialAnnotationLoss(14)(logits, labels, mask), logits)
    assert tracker.peak_bytes <= 1.2 * logits_bytes, tracker.peak_bytes / logits_bytes


def test_deep_supervision_allocates_no_target():
    logits, labels, mask = _inputs(2, 14, 24)
    low = torch.randn(2, 14, 12, 12, 12, requires_grad=True)
    ds = DeepSupervisionPartialLoss(PartialAnnotationLoss(14))
    tracker = measure_fwd_bwd(lambda: ds([logits, low], labels, mask), logits, low)
    assert_no_materialised_target(tracker, logits)


def test_detector_flags_the_one_hot_reference():
    logits, labels, mask = _inputs(2, 14, 16)
    tracker = measure_fwd_bwd(lambda: reference_partial_loss(logits, labels, mask), logits)
    with pytest.raises(AssertionError, match="elements were created"):
        assert_no_materialised_target(tracker, logits)
    assert tracker.peak_bytes > 2 * logits.numel() * logits.element_size()


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
    """A single bool (B, C, *spatial) tensor is enough to fail, even with few big allocations."""
    logits, labels, _ = _inputs(1, 3, 8)

    def sneaky() -> torch.Tensor:
        target = labels == torch.arange(1, 4).view(1, 3, 1, 1, 1)  # (B, C, *sp) bool
        return (logits * target).sum()

    tracker = measure_fwd_bwd(sneaky, logits)
    with pytest.raises(AssertionError, match="integer/bool"):
        assert_no_materialised_target(tracker, logits)
