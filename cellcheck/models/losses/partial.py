"""Masked per-channel sigmoid Dice + BCE for partially annotated crops.

CellMap crops are annotated for only some of the 14 organelle classes.  A voxel labelled 0 is
background for the annotated classes and *unknown* for the others, so a loss that treats every
channel as supervised (softmax DiceCE, or sigmoid Dice+BCE without a mask) teaches the network
"unannotated = absent".  ``PartialAnnotationLoss`` scores each channel independently (sigmoid)
and only where the crop's annotation mask says the channel was annotated.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .annotations import AnnotatedSpec, annotation_mask
from .logit_sums import LogitStats, known_logit_stats, logit_stats
from .targets import VoxelTargets

__all__ = ["PartialAnnotationLoss", "check_label_values", "flatten_labels"]


def flatten_labels(labels: torch.Tensor, logits_shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """(B, 1, *spatial) or (B, *spatial) int labels -> validated (B, S) view; why: one check for all callers.

    Raises TypeError for non-integer labels (a float/bool target, e.g. a one-hot, is the usual
    mistake) and ValueError for wrong shapes, and for values outside 0..C where reading them costs
    no device sync (see ``check_label_values``).
    """
    b_size, c_size, *spatial = logits_shape
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(
            f"labels must be an integer label map with values 0..{c_size} (0 = background, k = channel k-1), "
            f"got dtype {labels.dtype}; pass the raw integer labels, not a one-hot/float target"
        )
    if tuple(labels.shape) == (b_size, 1, *spatial):
        labels = labels[:, 0]
    elif tuple(labels.shape) != (b_size, *spatial):
        raise ValueError(
            f"labels shape {tuple(labels.shape)} does not match logits {tuple(logits_shape)}: "
            f"expected ({b_size}, 1, {', '.join(map(str, spatial))}) or ({b_size}, {', '.join(map(str, spatial))})"
        )
    if _readable_without_sync(labels):
        check_label_values(labels, c_size)
    return labels.reshape(b_size, -1)


def check_label_values(labels: torch.Tensor, num_classes: int) -> None:
    """Raise ValueError unless every label is in 0..num_classes; why: a bad label is an index error later.

    Reads the values, so it is skipped in the loss for CUDA tensors (a host sync per step), under
    torch.compile and for fake tensors; the trainer checks labels as it loads them.
    """
    if not labels.numel():
        return
    if labels.dtype in (torch.uint16, torch.uint32, torch.uint64):
        labels = labels.long()  # min/max are not implemented for these dtypes
    lo, hi = (int(v) for v in torch.aminmax(labels))
    if lo < 0 or hi > num_classes:
        raise ValueError(
            f"labels must be in 0..{num_classes} (0 = background, value k = channel k-1 of {num_classes}), "
            f"found values in [{lo}, {hi}]"
        )


def _readable_without_sync(t: torch.Tensor) -> bool:
    """True for a real CPU tensor outside compilation: its values can be read for free."""
    if torch.compiler.is_compiling() or t.device.type != "cpu":
        return False
    from torch._subclasses.fake_tensor import is_fake

    return not is_fake(t)


class PartialAnnotationLoss(nn.Module):
    """Per-channel sigmoid soft Dice + BCE-with-logits, masked by which classes each crop annotates.

    Inputs: logits (B, C, *spatial) fp32/fp16/bf16/fp64; labels (B, 1, *spatial) or (B, *spatial),
    any integer dtype, values 0..C (0 = background, k = channel k-1); annotated (B, C) bool, or a
    list of B strings such as "0,1,2" / "/basedir/0,1,2" (see ``annotation_mask``).
    Output: 0-d fp32 loss (fp64 for fp64 logits).

    With p = sigmoid(logits), y[b, c] = (labels == c + 1), N = voxels per sample, M = mask, and
    P = sum_v p (sum_v p^2 with ``squared_pred``, as MONAI's DiceLoss):

    * ``batch=False`` (per sample): for each annotated (b, c)
        dice[b, c] = 1 - (2 sum_v p y + smooth_nr) / (P + sum_v y + smooth_dr)
        bce[b, c]  = mean_v BCEWithLogits(x, y)
        l[b, c]    = w[c] * (lambda_dice * dice + lambda_bce * bce)
      loss_b = sum_c M[b, c] l[b, c] / #annotated channels of b, and the result is the mean of
      loss_b over the samples that have at least one annotated channel.
    * ``batch=True`` (like MONAI ``DiceLoss(batch=True)``, sums also over the batch): for each
      channel c annotated in at least one sample, the samples that annotate c are pooled as one
      volume and the samples that do not are left out of c's sums entirely:
        dice[c] = 1 - (2 sum_{b: M[b,c]} sum_v p y + smooth_nr)
                      / (sum_{b: M[b,c]} (P + sum_v y) + smooth_dr)
        bce[c]  = mean of BCEWithLogits over the voxels of those samples
        l[c]    = w[c] * (lambda_dice * dice[c] + lambda_bce * bce[c])
      and the result is the mean of l[c] over those channels.

    Dice matches MONAI ``DiceLoss(sigmoid=True)`` (which uses the same smooth terms); class
    weights multiply a channel's whole loss and the average divides by the *number* of annotated
    channels (MONAI's ``weight`` semantics, so inverse-frequency weights change the scale).
    A sample (batch) without any annotated channel contributes exactly 0 loss and 0 gradient;
    unannotated channels get exactly zero gradient.  No one-hot / (B, C, *spatial) target is
    built; see ``stats`` for the forward/backward and its memory.

    ``masked=False`` is the unmasked baseline (what the field trained first, docs/INCIDENTS.md, incident 1): every
    channel counts as annotated in every sample, so a voxel of an unannotated class is scored as
    background.  It exists to measure what the mask buys, not to train with.
    """

    def __init__(
        self,
        num_classes: int | None = None,
        *,
        batch: bool = False,
        squared_pred: bool = False,
        class_weights: Sequence[float] | torch.Tensor | None = None,
        lambda_dice: float = 1.0,
        lambda_bce: float = 1.0,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        masked: bool = True,
    ) -> None:
        """num_classes C (checked against logits; needed to parse string masks), options as in the class doc."""
        super().__init__()
        weights = None
        if class_weights is not None:
            weights = torch.as_tensor(class_weights, dtype=torch.float64).detach().clone()
            if weights.ndim != 1 or (num_classes is not None and weights.numel() != num_classes):
                raise ValueError(
                    f"class_weights must be a 1D sequence of length num_classes={num_classes}, "
                    f"got shape {tuple(weights.shape)}"
                )
            if not torch.isfinite(weights).all() or (weights < 0).any():
                raise ValueError(f"class_weights must be finite and >= 0, got {weights.tolist()}")
            if num_classes is None:
                num_classes = weights.numel()
        if lambda_dice < 0 or lambda_bce < 0:
            raise ValueError(f"lambda_dice and lambda_bce must be >= 0, got {lambda_dice}, {lambda_bce}")
        self.num_classes = num_classes
        self.batch = batch
        self.squared_pred = squared_pred
        self.masked = masked
        self.lambda_dice = float(lambda_dice)
        self.lambda_bce = float(lambda_bce)
        self.smooth_nr = float(smooth_nr)
        self.smooth_dr = float(smooth_dr)
        self.register_buffer("class_weights", weights)
        self.class_weights: torch.Tensor | None

    def forward(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor | VoxelTargets,
        annotated: torch.Tensor | Sequence[AnnotatedSpec] | None = None,
    ) -> torch.Tensor:
        """(B, C, *sp) float logits and targets -> 0-d fp32 (fp64) loss.

        Targets are either (B[, 1], *sp) int labels with `annotated` (B, C) bool or B strings (one class
        per voxel; a class annotated in a crop is known at all its voxels), or `VoxelTargets` (packed
        present and known bits per class and voxel; `annotated` unused): unknown voxels add nothing to
        their class, and each class's BCE is averaged over its known voxels.
        """
        self._check_logits(logits)
        b_size, c_size = logits.shape[:2]
        flat = logits.reshape(b_size, c_size, -1)
        if isinstance(labels, VoxelTargets):
            targets = labels.flat(b_size)
            known = targets.known if self.masked else torch.full_like(targets.known, 255)
            stats, n_known = known_logit_stats(flat, targets.present, known, squared=self.squared_pred)
        else:
            mask = self.check_mask(logits, annotated)
            flat_labels = flatten_labels(labels, logits.shape)
            stats = logit_stats(flat, flat_labels, squared=self.squared_pred)
            n_known = mask.to(stats.sum_p.dtype) * flat_labels.shape[1]
        out_dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
        return self.combine(stats, n_known).to(out_dtype)

    def _check_logits(self, logits: torch.Tensor) -> None:
        if not logits.is_floating_point():
            raise TypeError(f"logits must be a floating tensor, got {logits.dtype}")
        if logits.ndim < 3:
            raise ValueError(f"logits must be (B, C, *spatial), got shape {tuple(logits.shape)}")
        if self.num_classes is not None and logits.shape[1] != self.num_classes:
            raise ValueError(f"logits have {logits.shape[1]} channels, loss was built for num_classes={self.num_classes}")

    def check_mask(self, logits: torch.Tensor, annotated: torch.Tensor | Sequence[AnnotatedSpec]) -> torch.Tensor:
        """Validate logits, return the (B, C) bool mask on logits' device (all True when not ``masked``)."""
        self._check_logits(logits)
        b_size, c_size = logits.shape[:2]
        mask = annotation_mask(annotated, c_size, device=logits.device)
        if mask.shape[0] != b_size:
            raise ValueError(f"annotation mask has {mask.shape[0]} rows for a batch of {b_size}")
        return mask if self.masked else torch.ones_like(mask)

    def combine(self, stats: LogitStats, known: torch.Tensor) -> torch.Tensor:
        """(B, C) sums + (B, C) known-voxel counts -> 0-d loss as documented, in the sums' dtype.

        A class with no known voxel in a sample is not annotated there; BCE is a mean over known voxels
        (a whole crop's voxels when the annotation mask is per crop). Why one place: the masking math.
        """
        known = known.to(stats.sum_p)
        m = known > 0
        mf = m.to(stats.sum_p.dtype)
        bce_sum = stats.sum_softplus - stats.sum_x_label  # sum over known voxels of BCEWithLogits(x, y)
        pred = stats.sum_p2 if self.squared_pred else stats.sum_p
        weights = self.class_weights
        if self.batch:
            chan_any = m.any(0)
            inter = (stats.sum_p_label * mf).sum(0)
            denom = ((pred + stats.count) * mf).sum(0) + self.smooth_dr
            # where() before dividing keeps unannotated channels free of 0/0 in value and gradient.
            dice = 1.0 - (2.0 * inter + self.smooth_nr) / torch.where(chan_any, denom, 1.0)
            bce = (bce_sum * mf).sum(0) / torch.where(chan_any, known.sum(0), 1.0)
            per = self.lambda_dice * dice + self.lambda_bce * bce
            if weights is not None:
                per = per * weights.to(per)
            per = torch.where(chan_any, per, 0.0)
            return per.sum() / chan_any.sum().clamp(min=1)
        denom = torch.where(m, pred + stats.count + self.smooth_dr, 1.0)
        dice = 1.0 - (2.0 * stats.sum_p_label + self.smooth_nr) / denom
        per = self.lambda_dice * dice + self.lambda_bce * bce_sum / known.clamp(min=1)
        if weights is not None:
            per = per * weights.to(per)
        n_chan = mf.sum(1)
        per_sample = torch.where(m, per, 0.0).sum(1) / n_chan.clamp(min=1)
        return per_sample.sum() / (n_chan > 0).sum().clamp(min=1)

    def extra_repr(self) -> str:
        """Short config line for print(model)."""
        return (
            f"num_classes={self.num_classes}, batch={self.batch}, squared_pred={self.squared_pred}, "
            f"masked={self.masked}, lambda_dice={self.lambda_dice}, lambda_bce={self.lambda_bce}, "
            f"smooth_nr={self.smooth_nr}, smooth_dr={self.smooth_dr}, weighted={self.class_weights is not None}"
        )
