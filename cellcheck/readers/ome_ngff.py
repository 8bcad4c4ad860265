"""OME-NGFF multiscale metadata (0.4 in `.zattrs`, 0.5 under the `ome` key of `zarr.json`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True)
class Level:
    """One scale level of a multiscale group: array path, voxel size and first-voxel position (nm)."""

    path: str
    scale: tuple[float, ...]
    translation: tuple[float, ...]


class MetadataError(ValueError):
    """Multiscale metadata that is missing or does not follow the OME-NGFF spec."""


def multiscales_of(attrs: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    """The `multiscales` list of a group's attributes (either spec version), or None if it has none."""
    ome = attrs.get("ome")
    if isinstance(ome, Mapping) and "multiscales" in ome:
        return ome["multiscales"]
    return attrs.get("multiscales")


def parse_levels(attrs: Mapping[str, Any]) -> list[Level]:
    """Levels of the first multiscale in `attrs`, finest first. Raises MetadataError naming the bad key."""
    ms = multiscales_of(attrs)
    if not isinstance(ms, list) or not ms or not isinstance(ms[0], Mapping):
        raise MetadataError("no OME-NGFF 'multiscales' list in the group attributes")
    datasets = ms[0].get("datasets")
    if not isinstance(datasets, list) or not datasets:
        raise MetadataError("'multiscales[0].datasets' is missing or empty")
    ndim = _ndim(ms[0])
    global_scale, global_translation = _transforms(ms[0].get("coordinateTransformations", []), ndim)
    levels = []
    for ds in datasets:
        if not isinstance(ds, Mapping) or not isinstance(ds.get("path"), str):
            raise MetadataError("a 'datasets' entry has no 'path'")
        scale, translation = _transforms(ds.get("coordinateTransformations"), ndim)
        if scale is None:
            raise MetadataError(f"dataset {ds['path']!r} has no 'scale' transformation")
        translation = translation or (0.0,) * len(scale)
        if global_scale is not None:
            scale = tuple(np.multiply(scale, global_scale).tolist())
            translation = tuple(np.multiply(translation, global_scale).tolist())
        if global_translation is not None:
            translation = tuple(np.add(translation, global_translation).tolist())
        levels.append(Level(ds["path"], tuple(scale), tuple(translation)))
    return sorted(levels, key=lambda lv: float(np.prod(lv.scale)))


def listed_out_of_order(attrs: Mapping[str, Any]) -> list[str] | None:
    """The dataset paths as listed, when they are not finest first (OME-NGFF orders them so); else None."""
    levels = parse_levels(attrs)
    listed = [ds.get("path") for ds in multiscales_of(attrs)[0]["datasets"]]
    return listed if listed != [lv.path for lv in levels] else None


def _ndim(multiscale: Mapping[str, Any]) -> int | None:
    axes = multiscale.get("axes")
    return len(axes) if isinstance(axes, list) else None


def _transforms(items: Any, ndim: int | None) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    if items is None:
        return None, None
    if not isinstance(items, list):
        raise MetadataError("'coordinateTransformations' is not a list")
    scale = translation = None
    for t in items:
        if not isinstance(t, Mapping):
            raise MetadataError("a coordinate transformation is not an object")
        kind = t.get("type")
        if kind == "scale":
            scale = _numbers(t.get("scale"), "scale", ndim)
        elif kind == "translation":
            translation = _numbers(t.get("translation"), "translation", ndim)
    return scale, translation


def _numbers(value: Any, name: str, ndim: int | None) -> tuple[float, ...]:
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise MetadataError(f"'{name}' is not a list of numbers: {value!r:.80}")
    if ndim is not None and len(value) != ndim:
        raise MetadataError(f"'{name}' has {len(value)} values for {ndim} axes")
    return tuple(float(v) for v in value)
