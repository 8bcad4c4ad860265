"""Geometry from headers alone: image vs label shape, orientation, spacing and origin (crop vs raw: cellcheck.cellmap.pairing)."""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

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
    """shape-mismatch, orientation-mismatch and spacing-mismatch between an image and its label.

    `shown`: the label path to report. A flipped axis moves the origin to the array's other end, so the
    origin is compared only when the orientations agree (the orientation finding says what is wrong).
    """
    shown = label.path if shown is None else shown
    if spatial_shape(image.shape) != spatial_shape(label.shape):
        yield finding(
            "shape-mismatch", case, shown,
            f"label shape {list(label.shape)} differs from image shape {list(image.shape)}; re-convert the pair on one grid",
            image_shape=list(image.shape), label_shape=list(label.shape),
        )
    turned = orientation(case, image, label, shown)
    yield from turned
    spacing_ok, origin_ok = same_grid(image.spacing, image.origin, label.spacing, label.origin)
    if turned:
        origin_ok = True
    if not (spacing_ok and origin_ok):
        what = "voxel size" if not spacing_ok else "origin"
        yield finding(
            "spacing-mismatch", case, shown,
            f"label {what} differs from the image (spacing {list(label.spacing)} vs {list(image.spacing)}, "
            f"origin {list(label.origin)} vs {list(image.origin)}); resample the label onto the image grid",
            image_spacing=list(image.spacing), label_spacing=list(label.spacing),
            image_origin=list(image.origin), label_origin=list(label.origin),
        )


def orientation(case: str, image: Header, label: Header, shown: object) -> list[Finding]:
    """orientation-mismatch: the label's array axes run along other world directions than the image's.

    Each label axis is matched with the image axis it runs along: a reversed one is a flipped axis, another
    one a permutation. The arrays are then not voxel for voxel the same grid, whatever the world positions.
    """
    di, dl = _unit(image.direction), _unit(label.direction)
    if np.allclose(di, dl, atol=1e-3):
        return []
    dots = dl @ di.T  # [label axis, image axis]
    along = np.abs(dots).argmax(axis=1)
    differ = [j for j in range(3) if not np.allclose(dl[j], di[j], atol=1e-3)]
    if not np.allclose(np.abs(dots[np.arange(3), along]), 1.0, atol=1e-3) or len(set(along.tolist())) < 3:
        what = f"array axes {_axes(differ)} are rotated against the image's"
    elif all(along[j] == j for j in differ):
        what = f"array axis {_axes(differ)} {'is' if len(differ) == 1 else 'are'} flipped against the image's"
    else:
        what = "array axes " + ", ".join(f"{j} (along image axis {along[j]}{', reversed' if dots[j, along[j]] < 0 else ''})"
                                         for j in differ) + " are permuted against the image's"
    seen = "; ".join(f"axis {j} runs along {_rounded(dl[j])}, the image's along {_rounded(di[j])}" for j in differ)
    return [finding(
        "orientation-mismatch", case, shown,
        f"label {what} ({seen}): the voxel arrays do not overlay, so a loader that does not reorient both (a plain "
        "LoadImaged does not) pairs each image voxel with another place's label; write the label in the image's "
        "orientation", axes=differ, image_direction=[_rounded(v) for v in di], label_direction=[_rounded(v) for v in dl],
    )]


def _unit(direction: Sequence[Sequence[float]] | None) -> np.ndarray:
    return np.eye(3) if direction is None else np.asarray(direction, dtype=float)[:3, :3]


def _axes(axes: list[int]) -> str:
    return ", ".join(map(str, axes))


def _rounded(v: np.ndarray) -> list[float]:
    return [round(float(x), 3) + 0.0 for x in v]
