"""Cases too large for host memory once the DataLoader has loaded them (docs/INCIDENTS.md, incidents 4 and 5: crop 247)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from cellcheck.findings import Finding, finding

#: Bytes per voxel once MONAI's LoadImaged has a case in memory: float32 image + float32 label.
BYTES_PER_VOXEL_LOADED = 8

#: Host-memory budget of one in-flight sample: the field's 512G node over 2 DDP ranks x 8 workers x
#: prefetch 2 = 32 samples in flight, halved for transform copies: 512 GiB / 32 / 2 = 8 GiB.
DEFAULT_CASE_BUDGET_BYTES = 8 * 2**30


def oversized(case: str, path: Path, voxels: int, budget: int = DEFAULT_CASE_BUDGET_BYTES) -> Iterator[Finding]:
    """oversized-case when a loaded sample would exceed the per-sample host budget."""
    need = voxels * BYTES_PER_VOXEL_LOADED
    if need > budget:
        yield finding(
            "oversized-case", case, path,
            f"{voxels:.3g} voxels need {need / 2**30:.1f} GiB once loaded (float32 image + label), over the "
            f"{budget / 2**30:.0f} GiB per-sample budget; crop it into tiles or drop it",
            voxels=voxels, bytes=need, budget_bytes=budget,
        )
