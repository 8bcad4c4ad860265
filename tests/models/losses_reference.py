"""Test oracle: the partial-annotation loss written the obvious way (one-hot + MONAI DiceLoss + BCE).

Deliberately slow and memory-hungry; it exists to pin down the semantics documented in
``cellcheck.models.losses.PartialAnnotationLoss`` and, in the allocation tests, to show that the
detector flags a one-hot target.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from monai.networks.utils import one_hot


def reference_partial_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    *,
    batch: bool = False,
    squared_pred: bool = False,
    class_weights: torch.Tensor | None = None,
    lambda_dice: float = 1.0,
    lambda_bce: float = 1.0,
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
) -> torch.Tensor:
    """(B, C, *sp) logits, (B[, 1], *sp) int labels, (B, C) bool mask -> 0-d fp32 loss (oracle)."""
    x = logits.float()
    b_size, c_size = x.shape[:2]
    lab = labels if labels.ndim == x.ndim else labels.unsqueeze(1)
    target = one_hot(lab.long(), num_classes=c_size + 1)[:, 1:]  # (B, C, *sp) float one-hot
    bce = F.binary_cross_entropy_with_logits(x, target, reduction="none")
    w = torch.ones(c_size) if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
    if not batch:
        dice = DiceLoss(
            sigmoid=True, squared_pred=squared_pred, reduction="none", batch=False, smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
        )(
            x, target
        ).reshape(b_size, c_size)
        per = (lambda_dice * dice + lambda_bce * bce.flatten(2).mean(2)) * w
        sample_losses = [per[b][mask[b]].mean() for b in range(b_size) if mask[b].any()]
        if not sample_losses:
            return (x * 0).sum()
        return torch.stack(sample_losses).mean()
    channel_losses = []
    for c in range(c_size):
        sel = mask[:, c]
        if not sel.any():
            continue
        xs, ts = x[sel][:, c : c + 1], target[sel][:, c : c + 1]
        dice = DiceLoss(
            sigmoid=True, squared_pred=squared_pred, reduction="none", batch=True, smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
        )(xs, ts).reshape(())
        channel_losses.append(w[c] * (lambda_dice * dice + lambda_bce * bce[sel][:, c].mean()))
    if not channel_losses:
        return (x * 0).sum()
    return torch.stack(channel_losses).mean()


def reference_known_loss(
    logits: torch.Tensor,
    present: torch.Tensor,
    known: torch.Tensor,
    *,
    batch: bool = False,
    squared_pred: bool = False,
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
) -> torch.Tensor:
    """(B, C, *sp) logits, (B, C, *sp) bool present and known -> 0-d fp32 loss (oracle, dense masks).

    Each class's Dice and BCE over its known voxels only; a (sample, class) with no known voxel is not
    annotated there, and the averaging is the one of `reference_partial_loss`.
    """
    acc = torch.float64 if logits.dtype == torch.float64 else torch.float32
    x = logits.to(acc).flatten(2)
    y = present.flatten(2).to(acc)
    k = known.flatten(2).to(acc)
    p = torch.sigmoid(x)
    bce = F.binary_cross_entropy_with_logits(x, y, reduction="none") * k
    pred = (p * p if squared_pred else p) * k
    annotated = k.sum(2) > 0
    if not batch:
        dice = 1 - (2 * (p * y * k).sum(2) + smooth_nr) / (pred.sum(2) + (y * k).sum(2) + smooth_dr)
        per = dice + bce.sum(2) / k.sum(2).clamp(min=1)
        losses = [per[b][annotated[b]].mean() for b in range(x.shape[0]) if annotated[b].any()]
        return torch.stack(losses).mean() if losses else (x * 0).sum()
    chans = annotated.any(0)
    dice = 1 - (2 * (p * y * k).sum((0, 2)) + smooth_nr) / (pred.sum((0, 2)) + (y * k).sum((0, 2)) + smooth_dr)
    per = dice + bce.sum((0, 2)) / k.sum((0, 2)).clamp(min=1)
    return per[chans].mean() if chans.any() else (x * 0).sum()
