"""DeepSupervisionPartialLoss: weighted sum of the single-scale loss over SegResNetDS output levels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cellcheck.models.losses import (
    DeepSupervisionPartialLoss,
    PartialAnnotationLoss,
    level_weights,
    resize_labels_nearest,
)


def _levels(seed: int, b: int, c: int, size: int, n_levels: int, dims: int = 3) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(b, c, *([size // 2**lvl] * dims), generator=gen) for lvl in range(n_levels)]


def test_level_weights():
    assert level_weights(1) == [1.0]
    assert level_weights(3) == pytest.approx([1 / 1.75, 0.5 / 1.75, 0.25 / 1.75])
    raw = [1, 0.5, 0.25, 0.125, 0.0625, 0.0625]  # MONAI's exp mode floors at 0.0625
    assert level_weights(6) == pytest.approx([w / sum(raw) for w in raw])
    assert sum(level_weights(5, "two")) == pytest.approx(1.0)
    assert level_weights(2, "same") == [0.5, 0.5]
    with pytest.raises(ValueError, match="weight_mode"):
        level_weights(2, "linear")


@pytest.mark.parametrize("shape", [(8, 8, 8), (9, 6, 5), (7, 12)], ids=str)
def test_resize_labels_matches_interpolate_nearest_exact(shape):
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 15, (2, 1, *shape), generator=gen, dtype=torch.uint8)
    for factor in (2, 3, 4):
        size = [max(1, s // factor) for s in shape]
        ours = resize_labels_nearest(labels, size)
        ref = F.interpolate(labels.float(), size=size, mode="nearest-exact").to(torch.uint8)
        assert ours.dtype == torch.uint8 and torch.equal(ours, ref)
    up = [s + 3 for s in shape]
    assert torch.equal(
        resize_labels_nearest(labels, up), F.interpolate(labels.float(), size=up, mode="nearest-exact").to(torch.uint8)
    )
    with pytest.raises(ValueError, match="spatial dims"):
        resize_labels_nearest(labels, [2])


@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize("n_levels", [1, 3, 4])
def test_equals_manual_weighted_sum(batch, n_levels):
    b, c, size = 2, 5, 16
    outputs = [o.requires_grad_(True) for o in _levels(1, b, c, size, n_levels)]
    gen = torch.Generator().manual_seed(2)
    labels = torch.randint(0, c + 1, (b, 1, size, size, size), generator=gen).to(torch.int16)
    mask = torch.rand(b, c, generator=gen) < 0.6
    single = PartialAnnotationLoss(c, batch=batch)
    ds = DeepSupervisionPartialLoss(single)

    total = ds(outputs, labels, mask)
    grads = torch.autograd.grad(total, outputs)

    weights = level_weights(n_levels)
    manual = sum(
        w * single(o, F.interpolate(labels.float(), size=o.shape[2:], mode="nearest-exact").long(), mask)
        for w, o in zip(weights, outputs)
    )
    manual_grads = torch.autograd.grad(manual, outputs)
    torch.testing.assert_close(total, manual, atol=1e-6, rtol=1e-6)
    for g, mg in zip(grads, manual_grads):
        torch.testing.assert_close(g, mg, atol=1e-7, rtol=1e-5)
        assert (g[~mask] == 0).all()


def test_single_tensor_and_label_layouts():
    out = _levels(3, 2, 4, 8, 1, dims=2)[0]
    labels = torch.randint(0, 5, (2, 8, 8), generator=torch.Generator().manual_seed(4))
    mask = ["0,1", "/base/2,3"]
    single = PartialAnnotationLoss(4)
    ds = DeepSupervisionPartialLoss(single)
    torch.testing.assert_close(ds(out, labels, mask), single(out, labels, mask))
    torch.testing.assert_close(ds([out], labels, mask), single(out, labels, mask))
    levels = _levels(3, 2, 4, 8, 2, dims=2)
    torch.testing.assert_close(ds(levels, labels, mask), ds(levels, labels.unsqueeze(1), mask))


def test_empty_mask_and_explicit_weights():
    outputs = [o.requires_grad_(True) for o in _levels(5, 2, 3, 8, 3)]
    labels = torch.randint(0, 4, (2, 1, 8, 8, 8), generator=torch.Generator().manual_seed(6))
    ds = DeepSupervisionPartialLoss(PartialAnnotationLoss(3))
    total = ds(outputs, labels, torch.zeros(2, 3, dtype=torch.bool))
    total.backward()
    assert total.item() == 0.0 and all((o.grad == 0).all() for o in outputs)

    mask = torch.ones(2, 3, dtype=torch.bool)
    only_first = DeepSupervisionPartialLoss(PartialAnnotationLoss(3), weights=[2.0, 0.0, 0.0])
    torch.testing.assert_close(only_first(outputs, labels, mask), PartialAnnotationLoss(3)(outputs[0], labels, mask))
    with pytest.raises(ValueError, match="need 3 weights"):
        DeepSupervisionPartialLoss(PartialAnnotationLoss(3), weights=[1.0])(outputs, labels, mask)
    with pytest.raises(ValueError, match="non-empty"):
        ds([], labels, mask)
