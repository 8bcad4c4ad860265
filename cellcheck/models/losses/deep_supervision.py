"""Deep-supervision wrapper for SegResNetDS-style lists of multi-scale logits."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .annotations import AnnotatedSpec
from .partial import PartialAnnotationLoss
from .resize import resize_labels_nearest
from .targets import VoxelTargets

__all__ = ["DeepSupervisionPartialLoss", "level_weights", "resize_labels_nearest"]


def level_weights(levels: int, weight_mode: str = "exp") -> list[float]:
    """``levels`` floats summing to 1; why: one definition for the wrapper and its tests.

    "exp" = MONAI DeepSupervisionLoss's max(0.5**l, 0.0625) (1, 0.5, 0.25, ...), "same" = equal,
    "two" = 1, 0.5, 0.5, ...; unlike MONAI the weights are normalised to sum 1, so adding output
    levels does not change the loss scale.
    """
    levels = max(1, levels)
    if weight_mode == "exp":
        raw = [max(0.5**level, 0.0625) for level in range(levels)]
    elif weight_mode == "same":
        raw = [1.0] * levels
    elif weight_mode == "two":
        raw = [1.0 if level == 0 else 0.5 for level in range(levels)]
    else:
        raise ValueError(f"weight_mode must be 'exp', 'same' or 'two', got {weight_mode!r}")
    total = sum(raw)
    return [w / total for w in raw]


class DeepSupervisionPartialLoss(nn.Module):
    """Weighted sum of ``PartialAnnotationLoss`` over deep-supervision levels (first = full resolution).

    Each level's labels are the full-resolution labels resized by nearest neighbour to that
    level's spatial size; weights follow ``level_weights`` (exp: 1, 0.5, 0.25, ... normalised).
    A single tensor is scored as one level.  Output: 0-d fp32 loss.
    """

    def __init__(self, loss: PartialAnnotationLoss, weight_mode: str = "exp", weights: Sequence[float] | None = None) -> None:
        """``loss`` scores one level; explicit ``weights`` (normalised) override ``weight_mode``."""
        super().__init__()
        level_weights(1, weight_mode)  # validate early
        self.loss = loss
        self.weight_mode = weight_mode
        self.weights = None if weights is None else [float(w) for w in weights]

    def get_weights(self, levels: int) -> list[float]:
        """``levels`` weights summing to 1."""
        if self.weights is not None:
            if len(self.weights) < levels or sum(self.weights[:levels]) <= 0:
                raise ValueError(f"need {levels} weights with a positive sum, got {self.weights}")
            total = sum(self.weights[:levels])
            return [w / total for w in self.weights[:levels]]
        return level_weights(levels, self.weight_mode)

    def forward(
        self,
        outputs: torch.Tensor | Sequence[torch.Tensor],
        labels: torch.Tensor | VoxelTargets,
        annotated: torch.Tensor | Sequence[AnnotatedSpec] | None = None,
    ) -> torch.Tensor:
        """(B, C, *sp_l) logits or a list of them, and the targets `PartialAnnotationLoss` takes -> 0-d fp32.

        Int labels are resized per level by nearest neighbour, as are both masks of `VoxelTargets`.
        """
        if isinstance(outputs, torch.Tensor):
            return self.loss(outputs, labels, annotated)
        if len(outputs) == 0:
            raise ValueError("outputs must be a tensor or a non-empty list of tensors")
        first = outputs[0]
        if isinstance(labels, VoxelTargets):
            def level_targets(size):
                return labels.resized(size)
            mask = None
        else:
            mask = self.loss.check_mask(first, annotated)
            lab = labels if labels.ndim == first.ndim else labels.unsqueeze(1)

            def level_targets(size):
                return resize_labels_nearest(lab, size) if tuple(lab.shape[2:]) != tuple(size) else lab
        total = torch.zeros((), dtype=torch.float32, device=first.device)
        for weight, out in zip(self.get_weights(len(outputs)), outputs):
            total = total + weight * self.loss(out, level_targets(out.shape[2:]), mask)
        return total
