"""The grid a crop's class arrays share, and the arrays that leave it.

Every class array of a crop should have the same shape, voxel size and translation at its finest
level; the grid most of them share is the crop's (`reference_array`), and an array off it is a
defect of that array (`class_geometry`), not of the crop. Conversion, the audit and the store
loader all read a crop on the reference array's grid.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterator

import numpy as np

from cellcheck.cellmap.stores import ClassArray
from cellcheck.findings import Finding, finding
from cellcheck.grid import same_grid


def reference_array(arrays: list[ClassArray]) -> ClassArray:
    """The array whose grid (shape, scale, translation) most classes share: the odd one out is the defect."""
    def grid(a: ClassArray):
        lv = a.finest
        return (a.shape, tuple(np.round(lv.scale, 6)), tuple(np.round(lv.translation, 6)))

    votes = Counter(grid(a) for a in arrays)
    best = max(votes.values())
    return next(a for a in arrays if votes[grid(a)] == best)


def class_geometry(case: str, ref: ClassArray, others: list[ClassArray]) -> Iterator[Finding]:
    """Every class array of a crop on the grid of the reference one (finest levels compared)."""
    for arr in others:
        if arr.shape != ref.shape:
            yield finding(
                "shape-mismatch", case, arr.array_path,
                f"class '{arr.name}' has shape {list(arr.shape)}, class '{ref.name}' {list(ref.shape)}; re-export the crop",
                shape=list(arr.shape), reference_shape=list(ref.shape), reference=ref.name,
            )
        a, r = arr.finest, ref.finest
        spacing_ok, origin_ok = same_grid(r.scale, r.translation, a.scale, a.translation)
        if not (spacing_ok and origin_ok):
            yield finding(
                "spacing-mismatch", case, arr.array_path,
                f"class '{arr.name}' scale {list(a.scale)} / translation {list(a.translation)} differ from "
                f"class '{ref.name}' ({list(r.scale)} / {list(r.translation)}); fix its multiscales metadata",
                scale=list(a.scale), translation=list(a.translation),
                reference_scale=list(r.scale), reference_translation=list(r.translation),
            )
