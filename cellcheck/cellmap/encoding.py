"""What a CellMap label array may hold: its own declared encoding, or canonical class ids in `all`.

Each class array declares `annotation_type.encoding` (semantic: absent 0, present 1, unknown 255;
instance: object ids besides absent and unknown), and a crop's dense `all` holds canonical ids of
CellMap's classes.csv. Values outside those are label-values findings, whoever reads the array.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from cellcheck.classes import canonical_names
from cellcheck.findings import Finding, finding
from cellcheck.scan import VolumeScan


def encoded_values(case: str, path: Path, scan: VolumeScan, kind: str, encoding: dict[str, int]) -> Iterator[Finding]:
    """A CellMap class array holding values its own `annotation_type` does not allow.

    Semantic arrays hold only their encoding's values (0 absent, 1 present, 255 unknown); instance
    arrays hold object ids 1..N besides absent and unknown, so any non-negative integer is valid there.
    """
    if scan.counts is None:
        yield finding("label-values", case, path, f"class array is {scan.dtype}, expected integers with encoding {encoding}",
                      dtype=str(scan.dtype))
        return
    allowed = set(encoding.values())
    bad = sorted(v for v in scan.counts if (v < 0 if kind == "instance" else v not in allowed))
    if bad:
        what = "object ids must be >= 0" if kind == "instance" else f"not in its {kind} encoding {encoding}"
        yield finding(
            "label-values", case, path,
            f"values {bad[:8]}: {what}; the array or its annotation_type metadata is wrong",
            values=bad[:32], voxels=int(sum(scan.counts[v] for v in bad)),
        )


def canonical_values(case: str, path: Path, scan: VolumeScan) -> Iterator[Finding]:
    """A crop's dense `all` array holding values that are not CellMap canonical class ids (classes.csv)."""
    if scan.counts is None:
        yield finding("label-values", case, path, f"'all' is {scan.dtype}, expected uint8 canonical class ids",
                      dtype=str(scan.dtype))
        return
    known = set(canonical_names()) | {0}
    bad = sorted(v for v in scan.counts if v not in known)
    if bad:
        yield finding(
            "label-values", case, path,
            f"'all' holds {bad[:8]}, which are not CellMap class ids (classes.csv: 1..{max(known)}); "
            "the crop's dense label is corrupt or from another class table",
            values=bad[:32], voxels=int(sum(scan.counts[v] for v in bad)),
        )
