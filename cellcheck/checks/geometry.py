"""Geometry from headers alone: image vs label shape, spacing and origin (crop vs raw: cellcheck.cellmap.pairing)."""

from __future__ import annotations

from typing import Iterator

from cellcheck.findings import Finding, finding
from cellcheck.grid import same_grid
from cellcheck.readers.volume import Header


def spatial_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape without trailing singleton axes: a (X, Y, Z, 1) label matches an (X, Y, Z) image."""
    out = list(shape)
    while len(out) > 3 and out[-1] == 1:
        out.pop()
    return tuple(out)


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
