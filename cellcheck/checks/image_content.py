"""Image content: blank downloads, constant crops, zero slabs from clip + pad (docs/INCIDENTS.md, incidents 3 and 9)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from cellcheck.findings import Finding, finding
from cellcheck.scan import VolumeScan

_AXES = "zyx"


def image_content(case: str, path: Path, scan: VolumeScan) -> Iterator[Finding]:
    """blank-image (all zero), constant-image (one value), partial-blank (all-zero planes)."""
    if scan.voxels == 0:
        return
    if scan.minimum == 0 and scan.maximum == 0:
        yield finding(
            "blank-image", case, path,
            "image is all zero: a download that never arrived or raw EM missing at this resolution; re-fetch the crop",
            max=0,
        )
        return
    if scan.minimum == scan.maximum:
        yield finding(
            "constant-image", case, path,
            f"image has one value ({scan.minimum:g}) everywhere; CropForegroundd crashes on it; drop or re-fetch the crop",
            value=scan.minimum,
        )
        return
    runs = scan.zero_plane_runs()
    if runs:
        parts = [f"{n} of {scan.shape[a]} planes along axis {a}" for a, n in runs.items()]
        yield finding(
            "partial-blank", case, path,
            "all-zero planes (" + ", ".join(parts) + "): clip + pad or a partial download; check the crop bounds",
            zero_planes={str(a): n for a, n in runs.items()},
        )
