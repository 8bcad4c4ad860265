"""Where a run's crops come from: a MONAI datalist of NIfTI files, or a folder of CellMap stores read directly.

Both give the training loop the same four things: the run's intensity rule, the classes each training
crop is annotated for (class weights), one epoch's loader of patches, and the validation crops (each
read window by window). The store path records its split in the run folder (`split.json`), so a
resumed run trains and validates on the crops it started with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch.utils.data import DataLoader

from cellcheck.cellmap.stores import open_store
from cellcheck.cellmap.trainset import TrainingSet, describe, plan_training_set, record
from cellcheck.config import TrainConfig
from cellcheck.errors import CellcheckError
from cellcheck.grid import format_scale
from cellcheck.intensity import IntensityRule, rule_for_dtypes
from cellcheck.words import counted
from trainer.data import Case, intensity_rule, read_cases, split_fold, train_loader
from trainer.stores import StoreCrop, StoreValidation, prepare, store_loader

#: The run folder's record of a store run's split (crops, resolution, what was left out and why).
SPLIT_FILE = "split.json"


@dataclass
class RunData:
    """What the loop needs of its data; `loader(epoch, rank, world)` gives one epoch's patches."""

    rule: IntensityRule
    annotated: np.ndarray  # (training crops, C) bool
    validation: Sequence[Any]  # each with .validation(num_classes) -> something with .read(lo, hi) and .shape
    summary: str
    cfg: TrainConfig
    train_cases: Sequence[Case] = field(default_factory=list)
    train_crops: Sequence[StoreCrop] = field(default_factory=list)
    training: TrainingSet | None = None  # a store run's planned split

    _store_loader: DataLoader | None = None

    def loader(self, epoch: int, rank: int = 0, world: int = 1) -> DataLoader:
        if self.train_crops:  # one loader for the run: its workers persist, the sampler moves to the epoch
            if self._store_loader is None:
                self._store_loader = store_loader(self.train_crops, self.cfg.classes, self.cfg, rank=rank, world=world)
            self._store_loader.sampler.set_epoch(epoch)
            return self._store_loader
        return train_loader(self.train_cases, self.cfg, self.rule, rank=rank, world=world, epoch=epoch)

    def describe(self) -> str:
        return self.summary


def open_data(cfg: TrainConfig, resumed: bool = False, rank: int = 0, record: bool = True) -> RunData:
    """The run's data: from the stores when `datalist` names a folder of them, else from the datalist.

    `record` False leaves the run folder alone (a probe plans the split without recording it).
    """
    if cfg.from_stores:
        return _from_stores(cfg, resumed, rank, record)
    train, val = split_fold(read_cases(cfg.datalist, cfg.dataroot, cfg.num_classes), cfg.fold)
    annotated = np.stack([c.annotated for c in train]) if train else np.zeros((0, cfg.num_classes), dtype=bool)
    return RunData(intensity_rule([*train, *val]), annotated, val,
                   f"{len(train)} training / {counted(len(val), 'validation crop')}", cfg, train_cases=train)


def _from_stores(cfg: TrainConfig, resumed: bool, rank: int, keep: bool) -> RunData:
    recorded = cfg.output_dir / SPLIT_FILE
    if resumed and recorded.is_file():
        training = TrainingSet.from_json(json.loads(recorded.read_text()))
    else:
        training = plan_training_set(cfg.datalist, cfg.resolution, cfg.classes, fold=cfg.fold, datasplit=cfg.datasplit,
                                     exclude=cfg.exclude_crops, resample=cfg.resample)
        if rank == 0 and keep:
            record(training, recorded)
    if not training.train:
        raise CellcheckError(f"{cfg.datalist}: no crop trains at the resolution ({describe(training)}); run cellcheck "
                             "gate for the reasons")
    classes = cfg.classes
    train = prepare(training, classes, training.train, cfg.resample)
    val = prepare(training, classes, training.validate, cfg.resample, index=False)
    annotated = np.zeros((len(train), len(classes)), dtype=bool)
    for i, crop in enumerate(train):
        annotated[i, sorted(classes.channels_of(crop.case.classes))] = True
    return RunData(_raw_rule(training), annotated, [StoreValidation(c, classes) for c in val],
                   f"{len(train)} training / {counted(len(val), 'validation crop')} from the stores at "
                   f"{format_scale(training.resolution)}", cfg, train_crops=train, training=training)


def _raw_rule(training: TrainingSet) -> IntensityRule:
    """The intensity rule of the stores' raw EM (uint8 for CellMap: / 255), one for all of them."""
    dtypes = set()
    try:
        for store in {c.store for c in training.cases}:
            raw = open_store(Path(store)).raw
            dtypes.add(raw.group[raw.levels[0].path].dtype)
    finally:
        open_store.cache_clear()
    return rule_for_dtypes(dtypes, "the stores' raw EM")
