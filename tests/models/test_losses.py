"""PartialAnnotationLoss against the one-hot + MONAI oracle: values, gradients, masking, dtypes, errors, tracing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from losses_reference import reference_partial_loss  # noqa: E402

from cellcheck.models.losses import PartialAnnotationLoss  # noqa: E402

LABEL_DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64]
ATOL = 1e-5


def _case(
    seed: int,
    b: int,
    c: int,
    spatial: tuple[int, ...],
    *,
    label_dtype: torch.dtype = torch.int64,
    scale: float = 2.0,
    p_annot: float = 0.6,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded logits (B, C, *sp) fp32, labels (B, 1, *sp), mask (B, C) bool."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, *spatial, generator=gen) * scale
    labels = torch.randint(0, c + 1, (b, 1, *spatial), generator=gen).to(label_dtype)
    mask = torch.rand(b, c, generator=gen) < p_annot
    return logits, labels, mask


def _loss_and_grad(fn, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss value and d loss / d logits for a closure taking the leaf logits."""
    leaf = logits.detach().clone().requires_grad_(True)
    loss = fn(leaf)
    (grad,) = torch.autograd.grad(loss, leaf)
    return loss.detach(), grad


def _compare(
    logits: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    *,
    atol: float = ATOL,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Assert ours == reference (value and gradient) and exact-zero gradient off the mask."""
    ours = PartialAnnotationLoss(logits.shape[1], **kwargs)
    ref_kwargs = dict(kwargs)
    loss, grad = _loss_and_grad(lambda x: ours(x, labels, mask), logits)
    ref_loss, ref_grad = _loss_and_grad(lambda x: reference_partial_loss(x, labels, mask, **ref_kwargs), logits)
    assert loss.dtype == torch.float32 and loss.ndim == 0
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    torch.testing.assert_close(loss, ref_loss.to(loss.dtype), atol=atol, rtol=1e-5)
    torch.testing.assert_close(grad, ref_grad, atol=atol, rtol=1e-4)
    off = ~mask
    assert (grad[off] == 0).all(), "unannotated channels must get exactly zero gradient"
    return loss, grad


# --------------------------------------------------------------------------- oracle sweeps


@pytest.mark.parametrize("squared_pred", [False, True])
@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("spatial", [(7, 5), (4, 5, 3)], ids=["2d", "3d"])
@pytest.mark.parametrize("label_dtype", LABEL_DTYPES, ids=lambda d: str(d).split(".")[-1])
def test_matches_reference_seeded(batch, squared_pred, spatial, label_dtype):
    for seed in range(4):
        logits, labels, mask = _case(seed, 3, 5, spatial, label_dtype=label_dtype)
        _compare(logits, labels, mask, batch=batch, squared_pred=squared_pred)
        _compare(logits, labels[:, 0], mask, batch=batch, squared_pred=squared_pred)  # (B, *spatial) labels


@given(
    seed=st.integers(0, 2**31 - 1),
    b=st.integers(1, 3),
    c=st.integers(1, 6),
    spatial=st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple),
    label_dtype=st.sampled_from(LABEL_DTYPES),
    channel_dim=st.booleans(),
    batch=st.booleans(),
    squared_pred=st.booleans(),
    weighted=st.booleans(),
    lambdas=st.sampled_from([(1.0, 1.0), (0.7, 0.3), (0.0, 1.0), (1.0, 0.0)]),
    p_annot=st.sampled_from([0.0, 0.3, 0.7, 1.0]),
    scale=st.sampled_from([0.1, 2.0, 12.0]),
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_matches_reference_hypothesis(
    seed, b, c, spatial, label_dtype, channel_dim, batch, squared_pred, weighted, lambdas, p_annot, scale
):
    logits, labels, mask = _case(seed, b, c, spatial, label_dtype=label_dtype, scale=scale, p_annot=p_annot)
    if not channel_dim:
        labels = labels[:, 0]
    weights = torch.rand(c, generator=torch.Generator().manual_seed(seed + 1)) * 2 if weighted else None
    _compare(
        logits, labels, mask, batch=batch, squared_pred=squared_pred, class_weights=weights,
        lambda_dice=lambdas[0], lambda_bce=lambdas[1],
    )


@pytest.mark.parametrize("squared_pred", [False, True])
@pytest.mark.parametrize("batch", [False, True])
def test_larger_volume(batch, squared_pred):
    """14 classes, 24x24x25: many voxels per label bin, a softplus product group tail (S % 64 != 0)."""
    logits, labels, mask = _case(7, 2, 14, (24, 24, 25), label_dtype=torch.uint8, scale=4.0)
    _compare(logits, labels, mask, batch=batch, squared_pred=squared_pred)


@pytest.mark.parametrize("batch", [False, True])
def test_class_weights_and_custom_smooth(batch):
    logits, labels, mask = _case(3, 3, 4, (5, 6, 4))
    _compare(
        logits,
        labels,
        mask,
        batch=batch,
        class_weights=torch.tensor([0.5, 2.0, 0.0, 1.5]),
        smooth_nr=0.0,
        smooth_dr=1e-3,
        lambda_dice=0.25,
        lambda_bce=2.0,
    )


def test_gradcheck_float64():
    """The hand-written backward against finite differences, independent of the oracle."""
    for batch, squared_pred in ((False, False), (True, False), (False, True)):
        logits, labels, mask = _case(11, 2, 3, (3, 4))
        mask[0, 1] = False
        loss = PartialAnnotationLoss(3, batch=batch, squared_pred=squared_pred, class_weights=[1.0, 0.5, 2.0])
        x = logits.double().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda t: loss(t, labels, mask).double(), (x,), eps=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- masks and edge cases


@pytest.mark.parametrize("batch", [False, True])
def test_empty_mask_gives_exact_zero(batch):
    logits, labels, _ = _case(0, 2, 4, (5, 5, 5))
    mask = torch.zeros(2, 4, dtype=torch.bool)
    x = logits.clone().requires_grad_(True)
    loss = PartialAnnotationLoss(4, batch=batch)(x, labels, mask)
    loss.backward()
    assert loss.item() == 0.0 and not torch.isnan(loss)
    assert (x.grad == 0).all()
    ref = reference_partial_loss(x, labels, mask, batch=batch)
    assert ref.item() == 0.0


def test_empty_strings_mask_is_zero_loss():
    logits, labels, _ = _case(0, 2, 4, (4, 4))
    x = logits.clone().requires_grad_(True)
    loss = PartialAnnotationLoss(4)(x, labels, ["", "/data/base/"])
    loss.backward()
    assert loss.item() == 0.0 and (x.grad == 0).all()


@pytest.mark.parametrize("batch", [False, True])
def test_sample_without_annotation_gets_zero_gradient(batch):
    logits, labels, mask = _case(5, 3, 4, (4, 5, 6), p_annot=1.0)
    mask[1] = False
    _, grad = _compare(logits, labels, mask, batch=batch)
    assert (grad[1] == 0).all()
    assert (grad[0] != 0).any()


@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("kind", ["background", "foreground", "single-class", "absent-class"])
def test_degenerate_crops(batch, kind):
    logits, labels, mask = _case(9, 2, 5, (6, 5, 4), p_annot=1.0)
    if kind == "background":
        labels.zero_()
    elif kind == "foreground":
        labels = torch.randint(1, 6, labels.shape, generator=torch.Generator().manual_seed(1))
    elif kind == "single-class":
        labels.fill_(5)
    else:  # class 2 (label 3) annotated but nowhere in the crop
        labels[labels == 3] = 0
        assert mask[:, 2].all()
    _compare(logits, labels, mask, batch=batch)


def test_saturated_logits_are_finite_and_match():
    logits, labels, mask = _case(2, 2, 3, (5, 5, 5), scale=1.0)
    logits[:, 0] = 60.0
    logits[:, 1] = -60.0
    logits[0, 2, 0] = 1e4
    logits[1, 2, 0] = -1e4
    _compare(logits, labels, mask | True)


def test_non_contiguous_logits():
    logits, labels, mask = _case(4, 2, 3, (4, 5, 6))
    permuted = logits.permute(0, 2, 3, 4, 1).contiguous().permute(0, 4, 1, 2, 3)
    assert not permuted.is_contiguous()
    loss_p, grad_p = _loss_and_grad(lambda x: PartialAnnotationLoss(3)(x, labels, mask), permuted)
    loss_c, grad_c = _compare(logits, labels, mask)
    torch.testing.assert_close(loss_p, loss_c)
    torch.testing.assert_close(grad_p, grad_c)


def test_string_mask_equals_tensor_mask():
    logits, labels, _ = _case(6, 3, 14, (4, 4, 4))
    specs = ["0,1,2", "/data/cellmap/3,13", ""]
    mask = torch.zeros(3, 14, dtype=torch.bool)
    mask[0, [0, 1, 2]] = True
    mask[1, [3, 13]] = True
    loss = PartialAnnotationLoss(14)
    torch.testing.assert_close(loss(logits, labels, specs), loss(logits, labels, mask), atol=0, rtol=0)


def test_no_grad_and_inference_use():
    logits, labels, mask = _case(8, 2, 3, (4, 4))
    with torch.no_grad():
        value = PartialAnnotationLoss(3)(logits, labels, mask)
    torch.testing.assert_close(value, reference_partial_loss(logits, labels, mask), atol=ATOL, rtol=1e-5)


# --------------------------------------------------------------------------- reduced precision


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("batch", [False, True])
def test_reduced_precision_logits(dtype, batch):
    logits, labels, mask = _case(12, 2, 6, (8, 7, 6), scale=3.0)
    low = logits.to(dtype)
    loss_fn = PartialAnnotationLoss(6, batch=batch)
    loss_lo, grad_lo = _loss_and_grad(lambda x: loss_fn(x, labels, mask), low)
    loss_hi, grad_hi = _loss_and_grad(lambda x: loss_fn(x, labels, mask), low.float())
    assert loss_lo.dtype == torch.float32 and grad_lo.dtype == dtype
    assert torch.isfinite(loss_lo) and torch.isfinite(grad_lo).all()
    torch.testing.assert_close(loss_lo, loss_hi, atol=1e-2, rtol=1e-2)
    scale = grad_hi.abs().max()
    torch.testing.assert_close(grad_lo.float() / scale, grad_hi / scale, atol=1e-2, rtol=0)
    assert (grad_lo[~mask] == 0).all()


# --------------------------------------------------------------------------- input errors


def test_labels_out_of_range_raise():
    logits, labels, mask = _case(0, 2, 3, (4, 4))
    loss = PartialAnnotationLoss(3)
    with pytest.raises(ValueError, match=r"0\.\.3"):
        loss(logits, torch.full_like(labels, 4), mask)
    with pytest.raises(ValueError, match=r"\[-1, "):
        loss(logits, labels - 1, mask)
    with pytest.raises(ValueError, match="found values"):
        loss(logits, torch.full_like(labels, 255, dtype=torch.uint8), mask)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bool])
def test_non_integer_labels_raise_type_error(dtype):
    logits, labels, mask = _case(0, 2, 3, (4, 4))
    with pytest.raises(TypeError, match="integer label map"):
        PartialAnnotationLoss(3)(logits, labels.to(dtype), mask)


def test_shape_errors():
    logits, labels, mask = _case(0, 2, 3, (4, 4))
    loss = PartialAnnotationLoss(3)
    with pytest.raises(ValueError, match="labels shape"):
        loss(logits, labels[..., :3], mask)
    with pytest.raises(ValueError, match="labels shape"):
        loss(logits, labels.expand(2, 3, 4, 4), mask)
    with pytest.raises(ValueError, match=r"shape \(B, 3\)"):
        loss(logits, labels, mask[:, :2])
    with pytest.raises(ValueError, match="rows for a batch"):
        loss(logits, labels, mask[:1])
    with pytest.raises(ValueError, match="num_classes=4"):
        PartialAnnotationLoss(4)(logits, labels, torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="floating"):
        loss(labels.float().long(), labels, mask)
    with pytest.raises(ValueError, match="bool tensor"):
        loss(logits, labels, mask.int())


def test_constructor_validation():
    with pytest.raises(ValueError, match="length num_classes"):
        PartialAnnotationLoss(3, class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match=">= 0"):
        PartialAnnotationLoss(2, class_weights=[1.0, -2.0])
    with pytest.raises(ValueError, match="lambda"):
        PartialAnnotationLoss(2, lambda_bce=-1.0)
    assert PartialAnnotationLoss(class_weights=[1.0, 2.0]).num_classes == 2
    assert "batch=True" in repr(PartialAnnotationLoss(2, batch=True))


@pytest.mark.parametrize("label_dtype", LABEL_DTYPES, ids=lambda d: str(d).split(".")[-1])
def test_inputs_are_not_modified(label_dtype):
    logits, labels, mask = _case(13, 2, 4, (5, 6, 7), label_dtype=label_dtype)
    copies = logits.clone(), labels.clone(), mask.clone()
    x = logits.requires_grad_(True)
    PartialAnnotationLoss(4)(x, labels, mask).backward()
    assert torch.equal(logits.detach(), copies[0])
    assert torch.equal(labels, copies[1]) and torch.equal(mask, copies[2])


# --------------------------------------------------------------------------- the unmasked baseline


@pytest.mark.parametrize("batch", [False, True])
def test_unmasked_baseline_scores_unannotated_voxels_as_background(batch):
    """masked=False is the plain sigmoid Dice + BCE on the one-hot target, whatever the mask says."""
    logits, labels, mask = _case(21, 2, 4, (5, 6, 4), p_annot=0.5)
    baseline = PartialAnnotationLoss(4, batch=batch, masked=False)
    loss, grad = _loss_and_grad(lambda x: baseline(x, labels, mask), logits)
    everything = torch.ones_like(mask)
    ref, ref_grad = _loss_and_grad(lambda x: reference_partial_loss(x, labels, everything, batch=batch), logits)
    torch.testing.assert_close(loss, ref, atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(grad, ref_grad, atol=ATOL, rtol=1e-4)
    assert (grad[~mask] != 0).any()  # unannotated channels are trained towards "absent"


# --------------------------------------------------------------------------- tracing and compiling


def _ds_inputs(seed: int = 0):
    logits, labels, mask = _case(seed, 2, 5, (8, 8, 8), label_dtype=torch.uint8)
    low = torch.randn(2, 5, 4, 4, 4, generator=torch.Generator().manual_seed(seed + 1))
    return [logits.requires_grad_(True), low.requires_grad_(True)], labels, mask


@pytest.mark.parametrize("batch, squared_pred", [(False, False), (True, True)])
def test_no_graph_breaks(batch, squared_pred):
    from cellcheck.models.losses import DeepSupervisionPartialLoss

    outputs, labels, mask = _ds_inputs()
    loss = PartialAnnotationLoss(5, batch=batch, squared_pred=squared_pred)
    single = torch._dynamo.explain(loss)(outputs[0], labels, mask)
    deep = torch._dynamo.explain(DeepSupervisionPartialLoss(loss))(outputs, labels, mask)
    for explained in (single, deep):
        assert explained.graph_break_count == 0, explained.break_reasons
        assert explained.graph_count == 1


def test_runs_under_fake_tensor_mode():
    """What the VRAM model needs: shapes and dtypes through forward and backward, no real storage."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        logits = torch.empty(2, 14, 32, 32, 32, dtype=torch.bfloat16, requires_grad=True)
        labels = torch.empty(2, 1, 32, 32, 32, dtype=torch.uint8)  # values unknown: no range check
        loss = PartialAnnotationLoss(14, squared_pred=True)(logits, labels, torch.ones(2, 14, dtype=torch.bool))
        loss.backward()
        assert loss.shape == () and loss.dtype == torch.float32
        assert logits.grad.shape == logits.shape and logits.grad.dtype == torch.bfloat16


def test_compiled_equals_eager():
    from cellcheck.models.losses import DeepSupervisionPartialLoss

    outputs, labels, mask = _ds_inputs(3)
    loss = DeepSupervisionPartialLoss(PartialAnnotationLoss(5, squared_pred=True))
    eager = loss(outputs, labels, mask)
    eager_grads = torch.autograd.grad(eager, outputs)
    compiled = torch.compile(loss, fullgraph=True)(outputs, labels, mask)
    compiled_grads = torch.autograd.grad(compiled, outputs)
    torch.testing.assert_close(compiled, eager, atol=1e-6, rtol=1e-5)
    for got, want in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(got, want, atol=1e-7, rtol=1e-4)
        assert (got[~mask] == 0).all()
