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
