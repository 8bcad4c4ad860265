"""NaN and Inf voxels in a float image or label: one of them makes the loss of its whole batch NaN.

A loader that pads a read past the raw volume with NaN (the CellMap loader does) or an interpolation that
fails at an edge writes them; integer volumes cannot hold them. nnU-Net's dataset check looks for them too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from cellcheck.findings import Finding, finding
from cellcheck.scan import VolumeScan


def non_finite(case: str, path: Path, scan: VolumeScan, role: str) -> Iterator[Finding]:
    """non-finite: NaN or +-Inf voxels in the `role` ("image" or "label") volume."""
    bad = scan.nan + scan.inf
    if not bad:
        return
    fix = ("replace them with a real intensity or re-convert the crop" if role == "image" else
           "set them to 0 and leave their classes out of annotated_classes, or re-convert the crop")
    yield finding(
        "non-finite", case, path,
        f"{role} holds {scan.nan} NaN and {scan.inf} Inf voxels ({100 * bad / max(scan.voxels, 1):.2g} % of "
        f"{scan.voxels}): any of them in a patch makes its batch's loss NaN (NaN padding past the raw, or a "
        f"failed resampling, writes them); {fix}",
        nan=scan.nan, inf=scan.inf, voxels=scan.voxels,
    )
