"""Label values of a datalist: integers 0..C (CellMap arrays are checked against their encodings in cellcheck.cellmap.encoding)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from cellcheck.findings import Finding, finding
from cellcheck.scan import VolumeScan


def label_values(case: str, path: Path, scan: VolumeScan, num_classes: int) -> Iterator[Finding]:
    """Float labels, or integer values outside 0..num_classes."""
    if scan.counts is None:
        what = "non-integer values" if scan.nonintegral else "integral values"
        yield finding(
            "label-values", case, path,
            f"label is stored as {scan.dtype} ({what}); store integer labels 0..{num_classes} (uint8)",
            dtype=str(scan.dtype), min=scan.minimum, max=scan.maximum,
        )
        return
    bad = sorted(v for v in scan.counts if not 0 <= v <= num_classes)
    if bad:
        yield finding(
            "label-values", case, path,
            f"label values {bad[:8]} outside 0..{num_classes}; remap them or fix the conversion",
            values=bad[:32], voxels=int(sum(scan.counts[v] for v in bad)),
        )
