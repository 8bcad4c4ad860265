"""Parse per-crop "annotated classes" strings into the (B, C) bool mask used by the partial losses.

A crop's datalist entry lists the channels that were annotated, e.g. ``"0,1,2"``.  MONAI's
``datafold_read`` joins *every* non-empty string field with the data base dir, so the same value
arrives in training as ``"/basedir/0,1,2"``; only the last path component carries the classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cellcheck.annotated_classes import parse_annotated_classes

__all__ = ["annotation_mask", "from_annotated_classes", "inverse_frequency_weights"]

AnnotatedSpec = str | Sequence[str | int] | torch.Tensor


def from_annotated_classes(spec: AnnotatedSpec, num_classes: int) -> torch.Tensor:
    """(C,) bool row from "0,1,2" / "/basedir/0,1,2" / "" / [0, 1] / ["/b/0", "/b/1"]; why: datalists store strings.

    ``spec`` lists 0-based *channel* indices (label value k is channel k - 1).  A string may carry a
    directory prefix added by MONAI's ``datafold_read`` (only its basename is parsed); the empty
    string means "nothing annotated".  A list is what ``datafold_read`` makes of a JSON list (each
    item path-joined) and may also hold plain ints.  A (C,) bool tensor is returned as is (checked).
    Parsed by the audit's parser (`cellcheck.annotated_classes`), so the loss and the audit agree.
    Raises ValueError, naming ``spec``, for non-integers, out-of-range indices or empty items.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if isinstance(spec, torch.Tensor):
        if spec.dtype != torch.bool or spec.shape != (num_classes,):
            raise ValueError(
                f"annotated-classes tensor must be bool of shape ({num_classes},), "
                f"got {spec.dtype} {tuple(spec.shape)}"
            )
        return spec
    items = list(spec) if isinstance(spec, Sequence) and not isinstance(spec, str) else spec
    parsed = parse_annotated_classes(items, num_classes, path_joined_items=True)
    if parsed.channels is None:
        raise ValueError(f"annotated classes {spec!r}: {parsed.error}")
    row = torch.zeros(num_classes, dtype=torch.bool)
    row[sorted(parsed.channels)] = True
    return row


def annotation_mask(
    specs: Sequence[AnnotatedSpec] | torch.Tensor, num_classes: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """(B, C) bool mask from B specs (see ``from_annotated_classes``); why: a collated batch holds B strings.

    A (B, C) bool tensor passes through (checked, moved to ``device``), so callers can hand over
    either the collated strings or a ready mask.
    """
    if isinstance(specs, torch.Tensor):
        if specs.dtype != torch.bool or specs.ndim != 2 or specs.shape[1] != num_classes:
            raise ValueError(
                f"annotation mask must be a bool tensor of shape (B, {num_classes}), "
                f"got {specs.dtype} {tuple(specs.shape)}"
            )
        return specs.to(device) if device is not None else specs
    if isinstance(specs, str):
        raise ValueError(
            f"annotation_mask expects one spec per sample (a list), got the single string {specs!r}; "
            "use from_annotated_classes for one crop"
        )
    rows = [from_annotated_classes(s, num_classes) for s in specs]
    mask = torch.stack(rows) if rows else torch.zeros(0, num_classes, dtype=torch.bool)
    return mask.to(device) if device is not None else mask


def inverse_frequency_weights(mask: torch.Tensor) -> torch.Tensor:
    """(N, C) bool mask over the training crops -> (C,) fp64 class weights; why: rarely annotated classes count more.

    Weight of class c is proportional to 1 / (number of crops annotating c), scaled so the classes
    that are annotated somewhere average 1; classes annotated nowhere get 0.  Pass the result as
    ``PartialAnnotationLoss(class_weights=...)``.
    """
    if mask.dtype != torch.bool or mask.ndim != 2:
        raise ValueError(f"mask must be a (N, C) bool tensor, got {mask.dtype} {tuple(mask.shape)}")
    counts = mask.sum(0).to(torch.float64)
    seen = counts > 0
    weights = torch.where(seen, 1.0 / counts.clamp(min=1), 0.0)
    n_seen = int(seen.sum())
    return weights * (n_seen / weights.sum()) if n_seen else weights
