"""What a conversion is asked for: how crops are read (the core's PlanOptions) and how large a case may be."""

from __future__ import annotations

from dataclasses import dataclass

from cellcheck.cellmap.plan import PlanOptions
from cellcheck.checks.case_size import DEFAULT_CASE_BUDGET_BYTES


@dataclass(frozen=True)
class Options(PlanOptions):
    """Voxel size (nm, z y x), training classes, nearest upsampling, and the per-sample host budget of a case."""

    case_budget: int = DEFAULT_CASE_BUDGET_BYTES
