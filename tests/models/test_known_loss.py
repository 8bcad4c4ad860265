"""The masked loss with per-voxel unknowns (the store loader's packed targets) against a dense oracle.

Unknown voxels add nothing to the class they are unknown for, BCE is a mean over known voxels, and the
per-crop annotation mask of the datalist path is the special case of an all-known box: same value,
same gradient. It stays within twice the logits' memory, compiles without graph breaks and traces
under FakeTensorMode, as the integer-label path does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

sys.path.insert(0, str(Path(__file__).parent))
from losses_memtrack import measure_fwd_bwd  # noqa: E402
from losses_reference import reference_known_loss  # noqa: E402

from cellcheck.models.losses import DeepSupervisionPartialLoss, PartialAnnotationLoss, VoxelTargets  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def pack(masks: torch.Tensor) -> torch.Tensor:
    """(B, C, *sp) bool -> (B, ceil(C/8), *sp) uint8, bit c % 8 of byte c // 8 (the store loader's layout)."""
    return torch.from_numpy(np.packbits(masks.numpy(), axis=1, bitorder="little"))


def inputs(b=2, c=14, size=12, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, size, size, size, generator=gen).to(dtype).requires_grad_(True)
    present = torch.rand(b, c, size, size, size, generator=gen) < 0.3
    known = torch.rand(b, c, size, size, size, generator=gen) < 0.6
    known[:, 3] = False  # a class unknown everywhere
    known[0, 5] = True  # and one known everywhere in one sample
    return logits, present, known


@pytest.mark.parametrize("squared_pred", [False, True])
@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_value_and_gradient_equal_the_dense_oracle(batch, squared_pred, dtype):
    logits, present, known = inputs(dtype=dtype)
    ours = PartialAnnotationLoss(14, batch=batch, squared_pred=squared_pred)(logits, VoxelTargets(pack(present), pack(known)))
    (g_ours,) = torch.autograd.grad(ours, logits)
    ref = reference_known_loss(logits, present, known, batch=batch, squared_pred=squared_pred)
    (g_ref,) = torch.autograd.grad(ref, logits)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    assert float(ours.detach()) == pytest.approx(float(ref.detach()), rel=tol, abs=tol)
    torch.testing.assert_close(g_ours, g_ref.to(dtype), rtol=1e-4, atol=tol)


def test_unknown_voxels_get_no_gradient_for_their_class():
    logits, present, known = inputs()
    loss = PartialAnnotationLoss(14)(logits, VoxelTargets(pack(present), pack(known)))
    (grad,) = torch.autograd.grad(loss, logits)
    assert torch.all(grad[~known] == 0) and torch.all(grad[:, 3] == 0)
    assert torch.count_nonzero(grad[known]) == known.sum()


@pytest.mark.parametrize("batch", [False, True])
def test_a_per_crop_mask_is_the_all_known_special_case(batch):
    """Integer labels + a (B, C) annotation mask == packed targets whose known bits are that mask, everywhere."""
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 14, 10, 10, 10, generator=gen, requires_grad=True)
    labels = torch.randint(0, 15, (2, 1, 10, 10, 10), generator=gen, dtype=torch.uint8)
    mask = torch.rand(2, 14, generator=gen) < 0.5
    present = torch.stack([labels[:, 0] == c + 1 for c in range(14)], 1)
    known = mask[:, :, None, None, None].expand_as(present)
    loss = PartialAnnotationLoss(14, batch=batch)
    a = loss(logits, labels, mask)
    b = loss(logits, VoxelTargets(pack(present), pack(known.contiguous())))
    (ga,) = torch.autograd.grad(a, logits)
    (gb,) = torch.autograd.grad(b, logits)
    assert float(a) == pytest.approx(float(b), rel=1e-6)
    torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-8)


def test_unmasked_baseline_scores_unknown_voxels_as_background():
    logits, present, known = inputs()
    targets = VoxelTargets(pack(present & known), pack(known))
    unmasked = PartialAnnotationLoss(14, masked=False)(logits, targets)
    everything = torch.ones_like(known)
    ref = reference_known_loss(logits, present & known, everything)
    assert float(unmasked) == pytest.approx(float(ref), rel=1e-5)


def test_deep_supervision_resizes_both_masks():
    logits, present, known = inputs(size=16)
    low = torch.randn(2, 14, 8, 8, 8, requires_grad=True)
    targets = VoxelTargets(pack(present), pack(known))
    loss = DeepSupervisionPartialLoss(PartialAnnotationLoss(14))([logits, low], targets)
    loss.backward()
    assert torch.isfinite(loss) and low.grad is not None and torch.count_nonzero(low.grad) > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_forward_backward_within_twice_the_logits(dtype):
    logits, present, known = inputs(size=24, dtype=dtype)
    targets = VoxelTargets(pack(present), pack(known))
    tracker = measure_fwd_bwd(lambda: PartialAnnotationLoss(14)(logits, targets), logits)
    logits_bytes = logits.numel() * logits.element_size()
    assert tracker.peak_bytes <= 2 * logits_bytes + 64 * 1024, tracker.peak_bytes / logits_bytes
    big = tracker.large(logits.numel())
    assert all(a.dtype.is_floating_point for a in big), big  # no (B, C, *sp) integer or bool mask built


def test_compiles_without_graph_breaks_and_equals_eager():
    logits, present, known = inputs(size=8)
    targets = VoxelTargets(pack(present), pack(known))
    loss = PartialAnnotationLoss(14)
    explained = torch._dynamo.explain(loss)(logits, targets)
    assert explained.graph_break_count == 0, explained.break_reasons
    compiled = torch.compile(loss, fullgraph=True)
    assert float(compiled(logits, targets)) == pytest.approx(float(loss(logits, targets)), rel=1e-5)


def test_traces_under_fake_tensor_mode():
    with FakeTensorMode():
        logits = torch.empty(2, 14, 16, 16, 16, requires_grad=True)
        present = torch.empty(2, 2, 16, 16, 16, dtype=torch.uint8)
        loss = PartialAnnotationLoss(14)(logits, VoxelTargets(present, present))
        loss.backward()
        assert logits.grad.shape == logits.shape
