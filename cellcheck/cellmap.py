"""The CellMap layout: find zarr stores, their raw EM pyramid and their ground-truth crops.

Only metadata is read here (group attributes, array shapes); voxels are read by the audit.
Layout (CELLMAP_LAYOUT.md): `<ds>.zarr/recon-1/em/fibsem-uint8/s0..sN` and
`<ds>.zarr/recon-1/labels/groundtruth/cropNNN/<class>/s0..` with `cellmap.annotation` attributes.
"""

from __future__ import annotations

import os
from functools import lru_cache
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from cellcheck.findings import Finding, finding
from cellcheck.sources.ome_ngff import Level, MetadataError, parse_levels
from cellcheck.sources.volume import ReadError, short_reason
from cellcheck.sources.zarr_volume import ZARR_ERRORS, open_node

DEFAULT_ENCODING = {"absent": 0, "present": 1, "unknown": 255}


@dataclass
class RawPyramid:
    """The raw EM multiscale group: its levels (finest first) and each level's array shape."""

    path: Path
    group: Any
    levels: list[Level]
    shapes: dict[str, tuple[int, ...]]

    def level_at(self, scale: tuple[float, ...]) -> Level | None:
        """The raw level with this voxel size (nm), compared in physical units."""
        for lv in self.levels:
            if len(lv.scale) == len(scale) and np.allclose(lv.scale, scale, rtol=1e-6, atol=1e-9):
                return lv
        return None


@dataclass
class ClassArray:
    """Finest level of one class of a crop (or of its dense `all` label), with its annotation metadata."""

    name: str
    path: Path
    group: Any
    level: Level
    shape: tuple[int, ...]
    dtype: np.dtype
    encoding: dict[str, int]
    complement_counts: dict[str, int] | None


@dataclass
class Crop:
    id: str
    path: Path
    class_names: list[str] | None
    classes: dict[str, ClassArray] = field(default_factory=dict)
    all: ClassArray | None = None
    findings: list[Finding] = field(default_factory=list)
    unreadable: set[str] = field(default_factory=set)


@dataclass
class Store:
    """One dataset store: its raw pyramid and where its crops are (opened one by one with `open_crop`)."""

    path: Path
    root: Any
    raw: RawPyramid | None
    crop_paths: dict[str, str]  # crop id -> group path inside the store
    findings: list[Finding] = field(default_factory=list)

    def open_crop(self, crop_id: str) -> Crop:
        """Read one crop's metadata (class groups, scales, annotation attributes); no voxels."""
        return _open_crop(self.root, self.path, self.crop_paths[crop_id], crop_id)


def find_stores(root: Path) -> list[Path]:
    """Zarr stores at or below `root` (directories named `*.zarr`), sorted; never descends into one."""
    if root.name.endswith(".zarr"):
        return [root]
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        found += [Path(dirpath) / d for d in dirnames if d.endswith(".zarr")]
        dirnames[:] = sorted(d for d in dirnames if not d.endswith(".zarr"))
    return sorted(found)


@lru_cache(maxsize=16)
def open_store(path: Path) -> Store:
    """Read the metadata of one store (cached: each worker process opens a store once).

    A store whose root cannot be opened raises ReadError.
    """
    root = open_node(path)
    if not isinstance(root, zarr.Group):
        raise ReadError(path, "is a zarr array, not a CellMap dataset group")
    findings: list[Finding] = []
    raw = None
    raw_groups = [f"{r}/em/{e}" for r in _children(root, "") if r.startswith("recon") for e in _children(root, f"{r}/em")]
    raw_groups.sort(key=lambda p: (not p.endswith("fibsem-uint8"), p))
    for rel in raw_groups[:1]:
        try:
            group = root[rel]
            levels = parse_levels(dict(group.attrs))
            shapes = {lv.path: tuple(int(s) for s in group[lv.path].shape) for lv in levels}
            raw = RawPyramid(path / rel, group, levels, shapes)
        except (MetadataError, *ZARR_ERRORS) as exc:
            findings.append(finding("unreadable", None, path / rel, f"raw EM metadata is broken ({short_reason(exc)}); re-download it"))
    crops = {}
    for recon in (r for r in _children(root, "") if r.startswith("recon")):
        gt = f"{recon}/labels/groundtruth"
        for name in _children(root, gt):
            crops.setdefault(name, f"{gt}/{name}")
    return Store(path=path, root=root, raw=raw, crop_paths=crops, findings=findings)


def _children(root: Any, rel: str) -> list[str]:
    """Names of the sub-groups of `rel` (empty when it is absent or not a group)."""
    try:
        node = root[rel] if rel else root
        return sorted(node.group_keys()) if isinstance(node, zarr.Group) else []
    except ZARR_ERRORS:
        return []


def _open_crop(root: Any, store_path: Path, rel: str, name: str) -> Crop:
    path = store_path / rel
    try:
        group = root[rel]
        attrs = dict(group.attrs)
        members = sorted(group.group_keys())
    except ZARR_ERRORS as exc:
        crop = Crop(name, path, None)
        crop.findings.append(finding("unreadable", name, path, f"crop group is broken ({short_reason(exc)}); re-download it"))
        return crop
    ann = _annotation(attrs)
    names = ann.get("class_names")
    crop = Crop(name, path, list(names) if isinstance(names, list) else None)
    if crop.class_names is None:
        crop.findings.append(
            finding("annotation-metadata", name, path, "crop has no cellmap.annotation.class_names; classes taken from its sub-groups")
        )
    for cls in members:
        try:
            arr = _open_class(group, path, cls)
        except (MetadataError, ReadError, *ZARR_ERRORS) as exc:
            reason = exc.reason if isinstance(exc, ReadError) else short_reason(exc)
            crop.findings.append(finding("unreadable", name, path / cls, f"class '{cls}' cannot be read ({reason}); re-download this crop"))
            crop.unreadable.add(cls)
            continue
        if cls == "all":
            crop.all = arr
        else:
            crop.classes[cls] = arr
    return crop


def _open_class(crop_group: Any, crop_path: Path, cls: str) -> ClassArray:
    group = crop_group[cls]
    levels = parse_levels(dict(group.attrs))
    level = levels[0]
    array = group[level.path]
    ann = {**_annotation(dict(group.attrs)), **_annotation(dict(array.attrs))}
    encoding = dict(DEFAULT_ENCODING)
    enc = (ann.get("annotation_type") or {}).get("encoding") if isinstance(ann.get("annotation_type"), dict) else None
    if isinstance(enc, dict):
        encoding = {k: int(v) for k, v in enc.items() if isinstance(v, (int, float))}
    cc = ann.get("complement_counts")
    return ClassArray(
        name=cls,
        path=crop_path / cls / level.path,
        group=group,
        level=level,
        shape=tuple(int(s) for s in array.shape),
        dtype=np.dtype(array.dtype),
        encoding=encoding,
        complement_counts={k: int(v) for k, v in cc.items()} if isinstance(cc, dict) else None,
    )


def _annotation(attrs: dict[str, Any]) -> dict[str, Any]:
    cm = attrs.get("cellmap")
    ann = cm.get("annotation") if isinstance(cm, dict) else None
    return ann if isinstance(ann, dict) else {}
