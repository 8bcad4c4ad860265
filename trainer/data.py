"""Data for the trainer: datalist cases in, (image, integer label, annotation mask) patches out.

Labels stay integers (uint8) from disk to the loss: no float32 copy from LoadImaged and no
14-channel one-hot anywhere (FIELD_NOTES 5: that expansion cost +4.2 GB RSS per sample and
OOM-killed the job at --mem=200G). Every sample carries its (C,) annotation mask, parsed from
`annotated_classes` with the same parser the audit uses (path-joined form included).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Hashable, Mapping, Sequence

import nibabel as nib
import numpy as np
import torch
import zarr
from monai.data import DataLoader, Dataset
from monai.transforms import (
    Compose,
    MapTransform,
    RandCropByPosNegLabeld,
    RandFlipd,
    SpatialPadd,
)

from cellcheck.annotated_classes import parse_annotated_classes
from cellcheck.datalist import Datalist, load_datalist
from cellcheck.errors import CellcheckError
from cellcheck.sources.ome_ngff import parse_levels


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


def read_array(path: Path) -> np.ndarray:
    """A whole volume in its stored dtype, (Z, Y, X): NIfTI via nibabel, zarr array or OME-NGFF group."""
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return np.asanyarray(nib.load(str(path)).dataobj)
    node = zarr.open(store=str(path), mode="r")
    if isinstance(node, zarr.Group):
        node = node[parse_levels(dict(node.attrs))[0].path]
    return np.asarray(node)


class LoadCased(MapTransform):
    """Load image as float32 in 0..1 (uint8 / 255) and label as uint8, both (1, Z, Y, X)."""

    def __init__(self, keys: Sequence[Hashable] = ("image", "label")) -> None:
        super().__init__(keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = read_array(Path(d["image"]))
        scale = 1.0 / 255.0 if image.dtype == np.uint8 else 1.0
        d["image"] = torch.from_numpy((image.astype(np.float32) * np.float32(scale))[None])
        label = read_array(Path(d["label"]))
        if label.ndim == 4 and label.shape[-1] == 1:
            label = label[..., 0]
        if not np.issubdtype(label.dtype, np.integer):
            raise CellcheckError(f"{d['label']}: labels must be integers, got {label.dtype}; run cellcheck audit")
        d["label"] = torch.from_numpy(label.astype(np.uint8, copy=False)[None])
        d["annotated"] = torch.as_tensor(d["annotated"], dtype=torch.bool)
        return d


def train_transforms(roi_size: Sequence[int], num_patches: int, foreground_ratio: float) -> Compose:
    """Load, pad to the ROI, draw `num_patches` patches (a share centred on annotated foreground), flip."""
    keys = ("image", "label")
    return Compose([
        LoadCased(keys),
        SpatialPadd(keys, spatial_size=roi_size),
        RandCropByPosNegLabeld(keys, label_key="label", spatial_size=roi_size, pos=foreground_ratio,
                               neg=1.0 - foreground_ratio, num_samples=num_patches, allow_smaller=True),
        RandFlipd(keys, prob=0.5, spatial_axis=0),
        RandFlipd(keys, prob=0.5, spatial_axis=1),
        RandFlipd(keys, prob=0.5, spatial_axis=2),
    ])


def train_loader(cases: Sequence[Case], cfg: Mapping[str, Any], *, rank: int = 0, world: int = 1,
                 epoch: int = 0) -> DataLoader:
    """Batches of patches for one epoch; the order and the crops depend only on (seed, epoch, rank)."""
    seed = int(cfg["seed"]) * 1000 + epoch
    transform = train_transforms(cfg["roi_size"], cfg["num_patches_per_image"], cfg["foreground_ratio"])
    transform.set_random_state(seed=seed * 97 + rank)
    mine = [c.as_dict() for i, c in enumerate(_shuffled(cases, seed)) if i % world == rank]
    workers = int(cfg["num_workers"])
    return DataLoader(
        Dataset(mine, transform=transform),
        batch_size=max(1, cfg["batch_size"] // cfg["num_patches_per_image"]),
        shuffle=False,
        num_workers=workers,
        prefetch_factor=cfg["prefetch_factor"] if workers else None,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(seed * 131 + rank),
    )


def _shuffled(cases: Sequence[Case], seed: int) -> list[Case]:
    order = np.random.default_rng(seed).permutation(len(cases))
    return [cases[i] for i in order]


def load_validation_case(case: Case) -> dict[str, Any]:
    """A whole validation crop: image (1, 1, Z, Y, X) float32, label (Z, Y, X) uint8, mask (C,) bool."""
    d = LoadCased()(case.as_dict())
    return {"case": case.case, "image": d["image"][None], "label": d["label"][0], "annotated": d["annotated"]}
