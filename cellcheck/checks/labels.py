"""Label values: integer 0..C in the datalist (FIELD_NOTES 10), the declared encoding in CellMap arrays."""

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


def encoded_values(case: str, path: Path, scan: VolumeScan, encoding: dict[str, int]) -> Iterator[Finding]:
    """A CellMap class array holding values its `annotation_type.encoding` does not define."""
    allowed = set(encoding.values())
    if scan.counts is None:
        yield finding("label-values", case, path, f"class array is {scan.dtype}, expected uint8 with encoding {encoding}",
                      dtype=str(scan.dtype))
        return
    bad = sorted(v for v in scan.counts if v not in allowed)
    if bad:
        yield finding(
            "label-values", case, path,
            f"values {bad[:8]} are not in the encoding {encoding}; the array or its metadata is wrong",
            values=bad[:32], voxels=int(sum(scan.counts[v] for v in bad)),
        )

