"""Knobs of an audit run, in one place with their defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cellcheck.checks.case_size import DEFAULT_CASE_BUDGET_BYTES
from cellcheck.classes import DEFAULT_CLASS_MAP, ClassMap
from cellcheck.readers.volume import DEFAULT_BLOCK_BYTES


def default_jobs() -> int:
    """All cores this process may use (SLURM's cpuset included)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class AuditOptions:
    """`block_bytes` bounds voxel data in flight per worker; `case_budget` is host memory per loaded sample.

    `resolution` is the voxel size (nm, z y x) training runs at, None when not given; `classes` the
    training classes (label values and `annotated_classes` channels follow it); `source` the folder of
    CellMap stores a datalist's entries are checked against.
    """

    case_budget: int = DEFAULT_CASE_BUDGET_BYTES
    block_bytes: int = DEFAULT_BLOCK_BYTES
    jobs: int = 1
    progress: bool = False
    resolution: tuple[float, ...] | None = None
    classes: ClassMap = DEFAULT_CLASS_MAP
    source: Path | None = None  # CellMap stores a datalist was converted from (`audit --source`)
