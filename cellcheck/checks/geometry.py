"""Geometry from headers alone: image vs label shape, spacing and origin (crop vs raw: cellcheck.pairing)."""

from __future__ import annotations

from typing import Iterator

import numpy as np

from cellcheck.findings import Finding, finding
from cellcheck.sources.volume import Header


def spatial_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape without trailing singleton axes: a (X, Y, Z, 1) label matches an (X, Y, Z) image."""
    out = list(shape)
    while len(out) > 3 and out[-1] == 1:
        out.pop()
    return tuple(out)


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


def image_label_pair(case: str, image: Header, label: Header, shown: object = None) -> Iterator[Finding]:
    """shape-mismatch and spacing-mismatch between an image and its label (`shown`: the label path to report)."""
    shown = label.path if shown is None else shown
    if spatial_shape(image.shape) != spatial_shape(label.shape):
        yield finding(
            "shape-mismatch", case, shown,
            f"label shape {list(label.shape)} differs from image shape {list(image.shape)}; re-convert the pair on one grid",
            image_shape=list(image.shape), label_shape=list(label.shape),
        )
    spacing_ok, origin_ok = same_grid(image.spacing, image.origin, label.spacing, label.origin)
    if not (spacing_ok and origin_ok):
        what = "voxel size" if not spacing_ok else "origin"
        yield finding(
            "spacing-mismatch", case, shown,
            f"label {what} differs from the image (spacing {list(label.spacing)} vs {list(image.spacing)}, "
            f"origin {list(label.origin)} vs {list(image.origin)}); resample the label onto the image grid",
            image_spacing=list(image.spacing), label_spacing=list(label.spacing),
            image_origin=list(image.origin), label_origin=list(label.origin),
        )
