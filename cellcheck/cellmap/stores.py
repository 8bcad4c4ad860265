"""The CellMap layout: find zarr stores, their raw EM pyramid and their ground-truth crops.

Only metadata is read here (group attributes, array shapes, which chunk files exist); voxels are
read by the audit. Layout, as the challenge publishes it:
`<ds>.zarr/recon-1/em/fibsem-uint8/s0..sN` (raw, uint8) and
`<ds>.zarr/recon-1/labels/groundtruth/cropNNN/<class>/s0..` with `cellmap.annotation` attributes,
zarr format 2 with OME-NGFF 0.4 (format 3 with OME-NGFF 0.5 from newer tooling).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Collection, Sequence

import numpy as np

from cellcheck.errors import CellcheckError
from cellcheck.findings import Finding, finding
from cellcheck.grid import same_scale
from cellcheck.readers.ome_ngff import Level, MetadataError, listed_out_of_order, parse_levels
from cellcheck.readers.volume import ReadError, short_reason
from cellcheck.readers.zarr_compat import ZARR_ERRORS, chunk_exists_fn, child_groups, node_formats, open_node, storage_chunks

SEMANTIC_ENCODING = {"absent": 0, "present": 1, "unknown": 255}


@dataclass
class RawPyramid:
    """The raw EM multiscale group: its levels (finest first), their shapes, and which chunks exist."""

    path: Path
    group: Any
    levels: list[Level]
    shapes: dict[str, tuple[int, ...]]

    def level_at(self, scale: tuple[float, ...]) -> Level | None:
        """The raw level with this voxel size (nm), compared in physical units, never by name."""
        return next((lv for lv in self.levels if same_scale(lv.scale, scale)), None)

    def has_data(self, level: Level, start: np.ndarray, stop: np.ndarray) -> bool:
        """Whether any chunk file under the box [start, stop) of `level` exists (not metadata alone).

        `csc fetch-data` copies every level's metadata but the chunks only of levels at least 0.8x the
        crop's voxel size; the others read as their fill value (black). True when the store cannot tell.
        """
        try:
            arr = self.group[level.path]
        except ZARR_ERRORS:
            return False
        exists = chunk_exists_fn(arr)
        if exists is None:
            return True
        chunks = storage_chunks(arr)
        lo = np.maximum(start, 0)
        hi = np.minimum(stop, self.shapes[level.path])
        if (hi <= lo).any():
            return False
        ranges = [range(int(a) // c, -(-int(b) // c)) for a, b, c in zip(lo, hi, chunks)]
        return any(exists(idx) for idx in itertools.product(*ranges))


@dataclass
class ClassArray:
    """One class of a crop (or its dense `all` label): every level, with its annotation metadata."""

    name: str
    path: Path  # the class group
    group: Any
    levels: list[Level]  # finest first
    shapes: dict[str, tuple[int, ...]]
    dtype: np.dtype
    kind: str  # "semantic" or "instance" (cellmap annotation_type)
    encoding: dict[str, int]
    complement_counts: dict[str, int] | None  # of the finest level

    @property
    def finest(self) -> Level:
        return self.levels[0]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.shapes[self.finest.path]

    @property
    def array_path(self) -> Path:
        return self.path / self.finest.path

    @property
    def declared_present(self) -> bool:
        """False when complement_counts say every voxel is absent or unknown; True otherwise (or unsaid).

        Metadata only: the fold assignment spreads the crops where a class is present without reading voxels.
        """
        if not self.complement_counts:
            return True
        empty = sum(int(self.complement_counts.get(k, 0)) for k in ("absent", "unknown"))
        return empty < int(np.prod(self.shape, dtype=np.int64))


@dataclass
class Crop:
    id: str
    path: Path
    class_names: list[str] | None
    classes: dict[str, ClassArray] = field(default_factory=dict)
    all: ClassArray | None = None
    findings: list[Finding] = field(default_factory=list)
    unreadable: set[str] = field(default_factory=set)

    def present(self, names: Sequence[str]) -> list[str]:
        """The classes among `names` its metadata does not declare empty (complement_counts)."""
        return [n for n in names if n not in self.classes or self.classes[n].declared_present]


@dataclass
class Store:
    """One dataset store: its raw pyramid and where its crops are (opened one by one with `open_crop`)."""

    path: Path
    root: Any
    raw: RawPyramid | None
    crop_paths: dict[str, str]  # crop id -> group path inside the store
    findings: list[Finding] = field(default_factory=list)
    #: crop folders on disk that its reader cannot see (another zarr format, or group metadata missing)
    foreign_crops: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name.removesuffix(".zarr")

    def open_crop(self, crop_id: str, only: Collection[str] | None = None) -> Crop:
        """Read one crop's metadata (class groups, scales, annotation attributes); no voxels.

        `only`: open just these class groups (a full crop lists ~60; a conversion needs its training classes).
        """
        return _open_crop(self.root, self.path, self.crop_paths[crop_id], crop_id, only)


def find_stores(root: Path) -> list[Path]:
    """Zarr stores at or below `root` (directories named `*.zarr`), sorted; never descends into one."""
    if root.name.endswith(".zarr"):
        return [root]
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        found += [Path(dirpath) / d for d in dirnames if d.endswith(".zarr")]
        dirnames[:] = sorted(d for d in dirnames if not d.endswith(".zarr"))
    return sorted(found)


def find_stores_or_fail(root: Path) -> list[Path]:
    if not os.access(root, os.R_OK | os.X_OK):
        raise CellcheckError(f"{root}: permission denied; fix: make the folder readable")
    stores = find_stores(root)
    if not stores:
        raise CellcheckError(
            f"{root}: no CellMap zarr stores (*.zarr) found; pass a folder of stores or a datalist JSON file"
        )
    return stores


def case_names(found: list[tuple[Path, str]]) -> list[str]:
    """The case name of each (store, crop id): the crop id, or `<store>_<crop>` where ids repeat across stores."""
    counts: dict[str, int] = {}
    for _, crop in found:
        counts[crop] = counts.get(crop, 0) + 1
    return [crop if counts[crop] == 1 else f"{path.name.removesuffix('.zarr')}_{crop}" for path, crop in found]


@lru_cache(maxsize=16)
def open_store(path: Path) -> Store:
    """Read the metadata of one store (cached: each worker process opens a store once).

    A store whose root cannot be opened raises ReadError.
    """
    root = open_node(path)
    if not hasattr(root, "group_keys"):
        raise ReadError(path, "is a zarr array, not a CellMap dataset group")
    findings: list[Finding] = []
    raw = None
    raw_groups = [f"{r}/em/{e}" for r in _children(root, "") if r.startswith("recon") for e in _children(root, f"{r}/em")]
    raw_groups.sort(key=lambda p: (not p.endswith("fibsem-uint8"), p))
    for rel in raw_groups[:1]:
        try:
            group = root[rel]
            attrs = dict(group.attrs)
            levels = parse_levels(attrs)
            shapes = {lv.path: tuple(int(s) for s in group[lv.path].shape) for lv in levels}
            raw = RawPyramid(path / rel, group, levels, shapes)
            findings += _order_finding(None, path / rel, attrs)
        except (MetadataError, *ZARR_ERRORS) as exc:
            findings.append(finding("unreadable", None, path / rel, f"raw EM metadata is broken ({short_reason(exc)}); re-download it"))
    crops, foreign = {}, []
    for recon in (r for r in _children(root, "") if r.startswith("recon")):
        gt = f"{recon}/labels/groundtruth"
        listed = _children(root, gt)
        for name in listed:
            crops.setdefault(name, f"{gt}/{name}")
        found = _foreign_children(path, gt, listed, store_formats=node_formats(path))
        findings += found
        foreign += [f.case for f in found if f.case]
    hidden = _headless_crops(path, crops)
    findings += hidden
    foreign += [f.case for f in hidden]
    return Store(path=path, root=root, raw=raw, crop_paths=crops, findings=findings, foreign_crops=foreign)


def _children(root: Any, rel: str) -> list[str]:
    """Names of the sub-groups of `rel` (empty when it is absent or not a group)."""
    try:
        return child_groups(root[rel] if rel else root)
    except ZARR_ERRORS:
        return []


def _foreign_children(store: Path, rel: str, listed: list[str], store_formats: set[int]) -> list[Finding]:
    """Sub-folders of `rel` holding zarr metadata that the store's reader does not see (another format)."""
    folder = store / rel
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    out = []
    for name in names:
        formats = node_formats(folder / name)
        if not formats or name in listed or (store_formats and formats <= store_formats):
            continue  # not zarr, seen, or of the store's own format (unlisted for want of metadata: _headless_crops)
        crop = name if name.startswith("crop") else None
        out.append(
            finding(
                "mixed-zarr-format", crop, folder / name,
                f"{name} is zarr format {'/'.join(map(str, sorted(formats)))} inside a format "
                f"{'/'.join(map(str, sorted(store_formats))) or '?'} store: readers see one format per hierarchy, "
                "so it is invisible to them; rewrite it in the store's format",
                formats=sorted(formats), store_formats=sorted(store_formats),
            )
        )
    return out


def _headless_crops(store: Path, listed: Collection[str]) -> list[Finding]:
    """Crop folders under `recon-*/labels/groundtruth` that a zarr reader does not list: their group metadata is gone.

    A crop group without its `zarr.json` (or a v2 one without `.zgroup`), or below a parent group that lost
    it, is invisible to zarr, class arrays and all: without this it would vanish from every count.
    """
    meta = "zarr.json" if node_formats(store) == {3} else ".zgroup"
    out = []
    for recon in _subfolders(store):
        if not recon.name.startswith("recon"):
            continue
        gt = recon / "labels" / "groundtruth"
        for crop in _subfolders(gt):
            if crop.name in listed or node_formats(crop) - node_formats(store) or \
                    not any(node_formats(child) for child in _subfolders(crop)):
                continue  # listed, another format (mixed-zarr-format), or no zarr inside: not a crop
            lost = next((f for f in (recon, recon / "labels", gt, crop) if not node_formats(f)), crop)
            out.append(
                finding(
                    "unreadable", crop.name, crop,
                    f"{crop.name} holds class arrays but zarr readers do not see it: {lost.relative_to(store)} has no "
                    f"{meta} (its group metadata); restore the file or re-download the crop",
                    missing=str(lost.relative_to(store) / meta),
                )
            )
    return out


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir())
    except OSError:
        return []


def _order_finding(case: str | None, path: Path, attrs: dict, groups: list[str] | None = None) -> list[Finding]:
    """multiscale-metadata for a multiscale group whose datasets are not listed finest first."""
    order = listed_out_of_order(attrs)
    if order is None:
        return []
    where = f" in {', '.join(groups)}" if groups else ""
    return [
        finding(
            "multiscale-metadata", case, path,
            f"multiscales datasets are listed {order}{where}, not finest first: readers that take datasets[0] as "
            "full resolution (most do) read a coarse level; list them finest first",
            listed=order, groups=groups or [],
        )
    ]


def _open_crop(root: Any, store_path: Path, rel: str, name: str, only: Collection[str] | None = None) -> Crop:
    path = store_path / rel
    try:
        group = root[rel]
        attrs = dict(group.attrs)
        members = child_groups(group)
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
    crop.findings += _foreign_children(store_path, rel, members, node_formats(path))
    disordered: dict[str, dict] = {}
    for cls in members if only is None else [m for m in members if m in only]:
        try:
            arr, class_attrs = _open_class(group, path, cls)
        except (MetadataError, ReadError, *ZARR_ERRORS) as exc:
            reason = exc.reason if isinstance(exc, ReadError) else short_reason(exc)
            crop.findings.append(finding("unreadable", name, path / cls, f"class '{cls}' cannot be read ({reason}); re-download this crop"))
            crop.unreadable.add(cls)
            continue
        if listed_out_of_order(class_attrs):
            disordered[cls] = class_attrs
        if cls == "all":
            crop.all = arr
        else:
            crop.classes[cls] = arr
    if disordered:  # one finding per crop, naming its groups
        crop.findings += _order_finding(name, path, next(iter(disordered.values())), sorted(disordered))
    return crop


def _open_class(crop_group: Any, crop_path: Path, cls: str) -> tuple[ClassArray, dict]:
    group = crop_group[cls]
    attrs = dict(group.attrs)
    levels = parse_levels(attrs)
    arrays = {lv.path: group[lv.path] for lv in levels}
    finest = arrays[levels[0].path]
    ann = {**_annotation(attrs), **_annotation(dict(finest.attrs))}
    kind, encoding = _annotation_type(ann.get("annotation_type"))
    cc = ann.get("complement_counts")
    arr = ClassArray(
        name=cls,
        path=crop_path / cls,
        group=group,
        levels=levels,
        shapes={p: tuple(int(s) for s in a.shape) for p, a in arrays.items()},
        dtype=np.dtype(finest.dtype),
        kind=kind,
        encoding=encoding,
        complement_counts={k: int(v) for k, v in cc.items()} if isinstance(cc, dict) else None,
    )
    return arr, attrs


def _annotation_type(value: Any) -> tuple[str, dict[str, int]]:
    """("semantic" | "instance", encoding) of a `cellmap.annotation.annotation_type` (semantic 0/1/255 if absent)."""
    if not isinstance(value, dict):
        return "semantic", dict(SEMANTIC_ENCODING)
    kind = "instance" if value.get("type") == "instance_segmentation" else "semantic"
    enc = value.get("encoding")
    if isinstance(enc, dict):
        return kind, {k: int(v) for k, v in enc.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return kind, dict(SEMANTIC_ENCODING) if kind == "semantic" else {"absent": 0, "unknown": 255}


def _annotation(attrs: dict[str, Any]) -> dict[str, Any]:
    cm = attrs.get("cellmap")
    ann = cm.get("annotation") if isinstance(cm, dict) else None
    return ann if isinstance(ann, dict) else {}
