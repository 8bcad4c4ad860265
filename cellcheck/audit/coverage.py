"""The coverage plan of an audited dataset at a split: the trainer's fold of a datalist, or a store run's crops.

Shared by `cellcheck audit --roi` (fold 0, as the trainer's default) and the gate (the config's split).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from cellcheck.checks.coverage import CoveragePlan, Sampling, coverage_plan, datalist_split, stale_counts, store_split
from cellcheck.classes import ClassMap
from cellcheck.datalist import load_datalist
from cellcheck.findings import Finding
from cellcheck.stats import CaseStats

if TYPE_CHECKING:
    from cellcheck.cellmap.trainset import TrainingSet


def plan_of(source: Path, findings: Sequence[Finding], stats: Sequence[CaseStats], classes: ClassMap,
            sampling: Sampling, *, fold: int = 0, dataroot: Path | None = None,
            training: "TrainingSet | None" = None) -> CoveragePlan:
    """The plan of an audit's crops (`stats`, `findings`): split as `training` splits them (stores), else by
    `fold` (a datalist). A store folder without a training set is planned over every crop, unsplit."""
    stale = stale_counts(findings)
    if training is not None:
        train, val = store_split(training, stats)
        return coverage_plan(train, val, classes, sampling, training.split, stale)
    if Path(source).is_file():
        train, val = datalist_split(load_datalist(Path(source), dataroot), stats, fold)
        return coverage_plan(train, val, classes, sampling, f"fold {fold} validates", stale)
    return coverage_plan(stats, (), classes, sampling, "every crop, unsplit", stale)
