"""Data for the trainer: datalist cases in, (image, integer label, annotation mask) patches out.

Volumes are read by the audit's readers (`cellcheck.readers.read_volume`) and images become
network input by the run's one intensity rule (`cellcheck.intensity`), the rule inference applies
too. Labels stay integers (uint8) from disk to the loss, checked against 0..C as they are loaded:
no float32 copy from LoadImaged and no 14-channel one-hot anywhere (docs/INCIDENTS.md, incident 5: that expansion
cost +4.2 GB RSS per sample and OOM-killed the job at --mem=200G). Every sample carries its (C,)
annotation mask, parsed from `annotated_classes` with the same parser the audit uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.data import DataLoader, Dataset
from monai.transforms import (
    Compose,
    MapTransform,
    RandCropByPosNegLabeld,
    RandFlipd,
    SpatialPadd,
)

from cellcheck.annotated_classes import parse_annotated_classes
from cellcheck.config import TrainConfig
from cellcheck.datalist import Datalist, load_datalist
from cellcheck.errors import CellcheckError
from cellcheck.intensity import IntensityRule, rule_for_dtypes
from cellcheck.readers import open_volume
from cellcheck.readers.arrays import read_volume
from cellcheck.readers.volume import ReadError
from trainer.validation import ArrayCase


@dataclass(frozen=True)
class Case:
    """One training case: files, its fold and the (C,) mask of annotated channels."""

    case: str
    image: Path
    label: Path
    fold: int | None
    annotated: np.ndarray

    def as_dict(self) -> dict[str, Any]:
        return {"case": self.case, "image": str(self.image), "label": str(self.label), "annotated": self.annotated}

    def validation(self, num_classes: int) -> ArrayCase:
        """The crop as validation reads it: stored image and integer label, window by window."""
        return ArrayCase(self.case, read_array(self.image), checked_label(self.label, num_classes), self.annotated)


def read_cases(datalist: Path, dataroot: Path | None, num_classes: int) -> list[Case]:
    """Training entries of a datalist that the gate accepted, with parsed annotation masks."""
    dl: Datalist = load_datalist(datalist, dataroot)
    cases = []
    for e in dl.entries:
        if e.section != "training" or not e.valid:
            continue
        mask = np.ones(num_classes, dtype=bool)
        if e.has_annotated_classes:
            parsed = parse_annotated_classes(e.annotated_classes, num_classes)
            if parsed.channels is None:
                raise CellcheckError(f"{datalist}: {e.where}: annotated_classes {parsed.error}")
            mask = np.zeros(num_classes, dtype=bool)
            mask[sorted(parsed.channels)] = True
        cases.append(Case(e.case, dl.resolve(e.image), dl.resolve(e.label), e.fold, mask))
    return cases


def split_fold(cases: Sequence[Case], fold: int) -> tuple[list[Case], list[Case]]:
    """MONAI datafold_read semantics: `fold == k` is validation, everything else (no fold too) trains."""
    val = [c for c in cases if c.fold == fold]
    train = [c for c in cases if c.fold != fold]
    return train, val


def intensity_rule(cases: Sequence[Case]) -> IntensityRule:
    """The run's intensity rule, from the images' stored dtype (headers only); all images must share it."""
    dtypes = []
    for case in cases:
        try:
            dtypes.append(open_volume(case.image).header.dtype)
        except ReadError as exc:
            raise CellcheckError(str(exc)) from None
    return rule_for_dtypes(dtypes, "the training and validation images")


def read_array(path: Path) -> np.ndarray:
    """A whole volume in its stored dtype, (Z, Y, X), by the audit's readers; CellcheckError if unreadable."""
    try:
        return read_volume(path).data
    except ReadError as exc:
        raise CellcheckError(str(exc)) from None


class LoadCased(MapTransform):
    """Load image as float32 network input (the intensity rule) and label as uint8, both (1, Z, Y, X)."""

    def __init__(self, rule: IntensityRule, num_classes: int, keys: Sequence[Hashable] = ("image", "label")) -> None:
        super().__init__(keys)
        self.rule, self.num_classes = rule, num_classes

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        d["image"] = torch.from_numpy(self.rule.apply(read_array(Path(d["image"])), str(d["image"]))[None])
        d["label"] = torch.from_numpy(checked_label(Path(d["label"]), self.num_classes)[None])
        d["annotated"] = torch.as_tensor(d["annotated"], dtype=torch.bool)
        return d


def train_transforms(roi_size: Sequence[int], num_patches: int, foreground_ratio: float, rule: IntensityRule,
                     num_classes: int) -> Compose:
    """Load (by the run's intensity rule), pad to the ROI, draw `num_patches` patches (a share centred on
    annotated foreground), flip."""
    keys = ("image", "label")
    return Compose([
        LoadCased(rule, num_classes, keys),
        SpatialPadd(keys, spatial_size=roi_size),
        RandCropByPosNegLabeld(keys, label_key="label", spatial_size=roi_size, pos=foreground_ratio,
                               neg=1.0 - foreground_ratio, num_samples=num_patches, allow_smaller=True),
        RandFlipd(keys, prob=0.5, spatial_axis=0),
        RandFlipd(keys, prob=0.5, spatial_axis=1),
        RandFlipd(keys, prob=0.5, spatial_axis=2),
    ])


def train_loader(cases: Sequence[Case], cfg: TrainConfig, rule: IntensityRule, *, rank: int = 0,
                 world: int = 1, epoch: int = 0) -> DataLoader:
    """Batches of patches for one epoch; the order and the crops depend only on (seed, epoch, rank)."""
    seed = int(cfg.seed) * 1000 + epoch
    transform = train_transforms(cfg.roi_size, cfg.num_patches_per_image, cfg.foreground_ratio, rule,
                                 cfg.num_classes)
    transform.set_random_state(seed=seed * 97 + rank)
    mine = [c.as_dict() for i, c in enumerate(_shuffled(cases, seed)) if i % world == rank]
    workers = int(cfg.num_workers)
    return DataLoader(
        Dataset(mine, transform=transform),
        batch_size=max(1, cfg.batch_size // cfg.num_patches_per_image),
        shuffle=False,
        num_workers=workers,
        prefetch_factor=cfg.prefetch_factor if workers else None,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(seed * 131 + rank),
    )


def _shuffled(cases: Sequence[Case], seed: int) -> list[Case]:
    order = np.random.default_rng(seed).permutation(len(cases))
    return [cases[i] for i in order]


def checked_label(path: Path, num_classes: int) -> np.ndarray:
    """A whole label volume as uint8, refused (CellcheckError) unless it holds integers 0..num_classes."""
    label = read_array(path)
    if not np.issubdtype(label.dtype, np.integer):
        raise CellcheckError(f"{path}: labels must be integers, got {label.dtype}; run cellcheck audit")
    if label.size and (int(label.min()) < 0 or int(label.max()) > num_classes):
        raise CellcheckError(f"{path}: label values {int(label.min())}..{int(label.max())} are outside "
                             f"0..{num_classes}; run cellcheck audit")
    return label.astype(np.uint8, copy=False)
