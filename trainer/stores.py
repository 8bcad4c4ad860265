"""Training patches straight from CellMap stores: no conversion, only the chunks a patch overlaps, targets packed.

A `TrainingSet` (cellcheck.cellmap.trainset) says which crops train at which resolution; here each
crop is read through the CellMap core's `CropReader`, one patch at a time:

- patch centres are drawn inside the crop's box as the datalist path's sampler draws them: with
  probability `foreground_ratio` near a voxel where a trained class is present (from an index of
  4^3 blocks built once per run), else anywhere in the crop; where the crop is smaller than the ROI
  the patch is centred on it and holds the raw around it (context, its labels unknown);
- three random flips (each axis with probability 1/2), as on the datalist path;
- every draw comes from a generator seeded by (seed, epoch, rank, item), so a resumed run, any
  number of workers and an uninterrupted run draw the same patches;
- a patch travels to the training process as its uint8 image and two packed bit masks (present,
  known: `ceil(C/8)` bytes per voxel each), and becomes float32 and per-class targets on the device;
- stores are opened in the process that reads them, never inherited through fork (zarr 3's event
  loop does not survive one), so workers > 0 are safe under zarr 2 and 3.
"""

from __future__ import annotations

import gc
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cellcheck.cellmap.plan import CropPlan, PlanOptions, plan_crop
from cellcheck.cellmap.reader import CropBox, CropReader
from cellcheck.cellmap.stores import open_store
from cellcheck.cellmap.trainset import StoreCase, TrainingSet
from cellcheck.classes import ClassMap
from cellcheck.config import TrainConfig

#: Side (voxels at the training resolution) of the blocks the foreground index records.
BLOCK = 4
#: Planes of the crop's box read at once while indexing its foreground (bounded memory, whatever the crop).
INDEX_SLAB = 32


@dataclass(frozen=True)
class StoreCrop:
    """What a worker needs to read one crop: the case, its plan at the resolution, its foreground blocks."""

    case: StoreCase
    plan: CropPlan
    foreground: np.ndarray  # flat indices of BLOCK^3 blocks (of the crop's box) where a trained class is present

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(b - a for a, b in zip(self.plan.crop_start, self.plan.crop_stop))


#: The CropReaders this process opened: (pid, case) -> reader. A forked worker finds its parent's pid in
#: the keys and opens its own (zarr objects do not survive a fork); a persistent worker keeps its own.
_OPENED: dict[tuple[int, str], CropReader] = {}


def reader_of(crop: StoreCrop, classes: ClassMap) -> CropReader:
    """The CropReader of a crop in this process, opened on first use, never one inherited through fork."""
    key = (os.getpid(), crop.case.case)
    reader = _OPENED.get(key)
    if reader is None:
        if any(pid != key[0] for pid, _ in _OPENED):
            _OPENED.clear()
            open_store.cache_clear()  # the parent's open stores are not ours to use
        store = open_store(Path(crop.case.store))
        opened = store.open_crop(crop.case.crop, only=classes.names)
        reader = _OPENED[key] = CropReader(crop.plan, store, opened, classes, crop.case.classes)
    return reader


def prepare(training: TrainingSet, classes: ClassMap, cases: Sequence[StoreCase], resample: bool,
            index: bool = True) -> list[StoreCrop]:
    """Plan each case at the training resolution and (for training crops) index its foreground, in this process.

    The stores opened here are closed again (the cache cleared) so that forked workers open their own.
    """
    out = []
    try:
        for case in cases:
            store = open_store(Path(case.store))
            crop = store.open_crop(case.crop, only=classes.names)
            plan = plan_crop(case.case, store, crop, PlanOptions(training.resolution, classes, upsample=resample))
            item = StoreCrop(case, plan, np.zeros(0, dtype=np.int64))
            if index:
                item = StoreCrop(case, plan, foreground_blocks(CropReader(plan, store, crop, classes, case.classes)))
            out.append(item)
    finally:
        open_store.cache_clear()
    return out


def foreground_blocks(reader: CropReader) -> np.ndarray:
    """Flat indices of the BLOCK^3 blocks of the crop's box where any trained class is present (slab by slab)."""
    shape = reader.shape
    blocks = tuple(math.ceil(n / BLOCK) for n in shape)
    hit = np.zeros(blocks, dtype=bool)
    (lo, hi) = reader.labelled
    for z0 in range(lo[0] - lo[0] % BLOCK, hi[0], INDEX_SLAB):
        z1 = min(hi[0], z0 + INDEX_SLAB)
        box = reader.read((max(z0, lo[0]), lo[1], lo[2]), (z1, hi[1], hi[2]), image=False)
        any_present = np.bitwise_or.reduce(box.present, axis=0) != 0 if box.present.size else None
        if any_present is None or not any_present.any():
            continue
        zz, yy, xx = np.nonzero(any_present)
        hit[(zz + max(z0, lo[0])) // BLOCK, (yy + lo[1]) // BLOCK, (xx + lo[2]) // BLOCK] = True
    return np.flatnonzero(hit)


class StorePatches(Dataset):
    """Every epoch's items: index e * n + i is item i of epoch e (the epoch's shuffled order, this rank's share).

    An item is a crop and its `num_patches_per_image` patches, as numpy arrays (collated into tensors).
    One dataset serves every epoch, so the loader's workers can persist and keep their stores open.
    """

    def __init__(self, crops: Sequence[StoreCrop], classes: ClassMap, cfg: TrainConfig, *, rank: int = 0,
                 world: int = 1) -> None:
        self.crops, self.classes = list(crops), classes
        self.roi = tuple(int(r) for r in cfg.roi_size)
        self.patches, self.foreground_ratio = cfg.num_patches_per_image, cfg.foreground_ratio
        self.seed, self.rank, self.world = int(cfg.seed), rank, world
        self.per_epoch = len(range(rank, len(self.crops), world))

    def __len__(self) -> int:
        return self.per_epoch

    def item(self, index: int) -> tuple[int, int, StoreCrop]:
        """(epoch, position in the epoch, crop) of an index."""
        epoch, position = divmod(index, self.per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.crops))
        return epoch, position, self.crops[int(order[self.rank + position * self.world])]

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        _, _, crop = self.item(index)
        reader = reader_of(crop, self.classes)
        boxes = [_flipped(reader.read(lo, hi), flips) for (lo, hi), flips in self.draws(index)]
        return {"image": np.stack([b.image for b in boxes])[:, None], "present": np.stack([b.present for b in boxes]),
                "known": np.stack([b.known for b in boxes])}

    def draws(self, index: int) -> list[tuple[tuple[tuple[int, ...], tuple[int, ...]], tuple[bool, bool, bool]]]:
        """The patches of item `index`: each its box (crop-box voxels) and which axes it is flipped along."""
        epoch, position, crop = self.item(index)
        rng = np.random.default_rng([self.seed, epoch, self.rank, position])
        out = []
        for _ in range(self.patches):
            box = self._box(crop, rng)
            out.append((box, tuple(bool(rng.random() < 0.5) for _ in range(3))))
        return out

    def _box(self, crop: StoreCrop, rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """A patch box: centred near foreground with probability foreground_ratio, kept inside the crop where it fits."""
        shape = crop.shape
        if crop.foreground.size and rng.random() < self.foreground_ratio:
            block = np.unravel_index(int(rng.choice(crop.foreground)), tuple(math.ceil(n / BLOCK) for n in shape))
            centre = [min(n - 1, b * BLOCK + int(rng.integers(BLOCK))) for b, n in zip(block, shape)]
        else:
            centre = [int(rng.integers(n)) for n in shape]
        lo = []
        for c, n, r in zip(centre, shape, self.roi):
            lo.append(int(np.clip(c - r // 2, 0, n - r)) if n >= r else (n - r) // 2)
        return tuple(lo), tuple(a + r for a, r in zip(lo, self.roi))

def _flipped(box: CropBox, flips: Sequence[bool]) -> CropBox:
    """The box flipped along the spatial axes marked (image and both masks alike), as RandFlipd does."""
    image, present, known = box.image, box.present, box.known
    for axis, flip in enumerate(flips):
        if flip:
            image = np.flip(image, axis)
            present, known = np.flip(present, axis + 1), np.flip(known, axis + 1)
    return CropBox(np.ascontiguousarray(image), np.ascontiguousarray(present), np.ascontiguousarray(known))


def concatenate(items: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Collate: the patches of every item of the batch, along the first axis, as tensors in their stored dtypes."""
    return {key: torch.from_numpy(np.concatenate([item[key] for item in items])) for key in items[0]}


class EpochSampler(Sampler[int]):
    """The indices of one epoch of a `StorePatches` (set_epoch chooses which), in order."""

    def __init__(self, per_epoch: int) -> None:
        self.per_epoch, self.epoch = per_epoch, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter(range(self.epoch * self.per_epoch, (self.epoch + 1) * self.per_epoch))

    def __len__(self) -> int:
        return self.per_epoch


def store_loader(crops: Sequence[StoreCrop], classes: ClassMap, cfg: TrainConfig, *, epoch: int = 0, rank: int = 0,
                 world: int = 1) -> DataLoader:
    """Batches of packed patches (crops per batch: batch_size // num_patches_per_image), set to `epoch`.

    Its workers persist across epochs (`loader.sampler.set_epoch(e)` moves it on): they open each
    store once and keep it; what they draw depends only on (seed, epoch, rank, item).
    """
    workers = int(cfg.num_workers)
    if workers:
        gc.collect()
        gc.freeze()  # the workers fork from here: their collector never walks (and so never copies) the parent's objects
    dataset = StorePatches(crops, classes, cfg, rank=rank, world=world)
    sampler = EpochSampler(len(dataset))
    sampler.set_epoch(epoch)
    return DataLoader(dataset, batch_size=max(1, cfg.batch_size // cfg.num_patches_per_image), sampler=sampler,
                      num_workers=workers, prefetch_factor=cfg.prefetch_factor if workers else None,
                      persistent_workers=workers > 0, collate_fn=concatenate)


@dataclass
class StoreValidation:
    """A validation crop read from the stores window by window (the crop's box at the training resolution)."""

    crop: StoreCrop
    classes: ClassMap

    @property
    def case(self) -> str:
        return self.crop.case.case

    def validation(self, num_classes: int) -> "StoreValidation":
        return self

    @property
    def shape(self) -> tuple[int, ...]:
        return self.crop.shape

    def read(self, lo: Sequence[int], hi: Sequence[int]) -> CropBox:
        return reader_of(self.crop, self.classes).read(tuple(lo), tuple(hi))
