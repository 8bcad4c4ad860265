"""Voxel grids: whether two voxel sizes or origins agree, and voxel sizes as users write and read them.

CellMap levels pair by physical voxel size and NIfTI pairs by header geometry; both compare floats
written by different tools (2.62 x 2 against 5.24 / 2), so equality is always within a tolerance here.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from cellcheck.errors import CellcheckError


def same_scale(a: Sequence[float], b: Sequence[float]) -> bool:
    """Voxel sizes equal within 0.1 % (2.62 x 2 == 5.24 / 2, whatever the float rounding)."""
    return len(a) == len(b) and bool(np.allclose(a, b, rtol=1e-3, atol=1e-9))


def same_grid(a_spacing, a_origin, b_spacing, b_origin) -> tuple[bool, bool]:
    """(spacing equal, origin equal) within 0.1 % of a voxel."""
    sa, sb = np.asarray(a_spacing, float), np.asarray(b_spacing, float)
    if sa.shape != sb.shape:
        return False, False
    spacing_ok = bool(np.allclose(sa, sb, rtol=1e-3, atol=1e-6))
    tol = 1e-3 * np.maximum(np.abs(sa), 1e-6)
    oa, ob = np.asarray(a_origin, float), np.asarray(b_origin, float)
    origin_ok = oa.shape == ob.shape and bool(np.all(np.abs(oa - ob) <= tol))
    return spacing_ok, origin_ok


def parse_resolution(text: str | float | Sequence[float] | None) -> tuple[float, float, float] | None:
    """'8' -> (8, 8, 8); '5.24,4,4' -> (5.24, 4, 4) in z, y, x (nm). Raises CellcheckError on anything else."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        values = [float(text)]
    elif isinstance(text, str):
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            values = []
    else:
        values = [float(v) for v in text]
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or not all(v > 0 and np.isfinite(v) for v in values):
        raise CellcheckError(f"--resolution {text!r}: expected a voxel size in nm, e.g. 8 or 5.24,4,4 (z,y,x)")
    return tuple(values)  # type: ignore[return-value]


def format_scale(scale: Sequence[float]) -> str:
    """'8 nm' for an isotropic voxel size, '5.24x4x4 nm' otherwise."""
    vals = [f"{v:g}" for v in scale]
    return f"{vals[0]} nm" if len(set(vals)) == 1 else "x".join(vals) + " nm"
