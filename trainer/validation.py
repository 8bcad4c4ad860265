"""Validation Dice per class, window by window: never a crop's (C, Z, Y, X) probabilities on the host.

A validation crop is a box read window by window (`trainer.windows.tiles`): the image of a window goes
through the network on the device, its probabilities are thresholded at 0.5 and scored against the
window's owned part, over the voxels where each class is known, and only the per-class sums (true
positives, predicted, present) are kept. A datalist crop is read from its image and integer label in
their stored dtypes (2 bytes per voxel on the host); a store crop from the stores, a window at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cellcheck.cellmap.reader import CropBox, packed_bytes
from cellcheck.intensity import IntensityRule
from cellcheck.models.losses import channel_bits
from cellcheck.models.networks import outputs_as_list
from trainer.windows import tiles

#: Windows overlap by this share of the ROI (the owned part of each is its centre).
OVERLAP = 0.25


@dataclass
class ArrayCase:
    """A validation crop held as its stored image and integer label (datalist path), read like a store crop."""

    case: str
    image: np.ndarray  # (Z, Y, X) stored dtype
    label: np.ndarray  # (Z, Y, X) uint8, 0 background, k = class k - 1
    annotated: np.ndarray  # (C,) bool

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.image.shape)

    def read(self, lo: Sequence[int], hi: Sequence[int]) -> CropBox:
        """Voxels [lo, hi), zeros and unknown outside the crop; packed present / known as the store reader packs them."""
        shape = tuple(b - a for a, b in zip(lo, hi))
        inner = tuple(slice(max(a, 0), min(b, n)) for a, b, n in zip(lo, hi, self.image.shape))
        at = tuple(slice(s.start - a, s.stop - a) for s, a in zip(inner, lo))
        image = np.zeros(shape, dtype=self.image.dtype)
        image[at] = self.image[inner]
        nbytes = packed_bytes(len(self.annotated))
        present = np.zeros((nbytes, *shape), dtype=np.uint8)
        known = np.zeros_like(present)
        label = self.label[inner]
        for c in np.flatnonzero(self.annotated):
            byte, bit = divmod(int(c), 8)
            present[(byte, *at)] |= (label == c + 1).view(np.uint8) << bit
            known[(byte, *at)] |= np.uint8(1 << bit)
        return CropBox(image, present, known)


def device_input(image: np.ndarray | torch.Tensor, rule: IntensityRule, device: torch.device) -> torch.Tensor:
    """(..., Z, Y, X) stored voxels -> float32 on the device by the run's intensity rule, converted there."""
    t = torch.as_tensor(image).to(device, non_blocking=True).to(torch.float32)
    if (rule.low, rule.high) != (0.0, 1.0):
        t = t.sub_(rule.low).mul_(1.0 / (rule.high - rule.low))
    return t


def score_case(net: torch.nn.Module, read: Callable[[Sequence[int], Sequence[int]], CropBox], shape: Sequence[int],
               roi: Sequence[int], num_classes: int, rule: IntensityRule, device: torch.device,
               amp: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class Dice of one crop and whether it counts: (C,) fp64 each, on the CPU.

    A class counts where it is known somewhere in the crop and predicted or present (Dice is undefined
    when both are empty). Sums over known voxels of the windows' owned parts, thresholded at 0.5.
    """
    sums = torch.zeros(4, num_classes, dtype=torch.float64, device=device)  # tp, predicted, present, known
    for win in tiles(shape, roi, OVERLAP):
        box = read(win.lo, win.hi)
        x = device_input(box.image, rule, device)[None, None]
        with torch.autocast(device.type, enabled=amp):
            logits = outputs_as_list(net(x))[0]
        pred = logits[0][(slice(None), *win.owned)] > 0  # sigmoid > 0.5
        present = torch.as_tensor(box.present[(slice(None), *win.owned)]).to(device).flatten(1)[None]
        known = torch.as_tensor(box.known[(slice(None), *win.owned)]).to(device).flatten(1)[None]
        pred = pred.flatten(1)
        for c in range(num_classes):
            k = channel_bits(known, c)[0].bool()
            y = channel_bits(present, c)[0].bool() & k
            p = pred[c] & k
            sums[:, c] += torch.stack([(p & y).sum(), p.sum(), y.sum(), k.sum()]).double()
    denom = sums[1] + sums[2]
    counted = (sums[3] > 0) & (denom > 0)
    dice = torch.where(counted, 2.0 * sums[0] / denom.clamp(min=1), 0.0)
    return dice.cpu(), counted.double().cpu()
