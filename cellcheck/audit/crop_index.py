"""`cellcheck audit DATALIST --source STORES`: each entry checked against the CellMap crop it came from.

An entry is placed, in this order, through the provenance `cellcheck convert` writes into the datalist
(the `cellcheck.cases` key: image path, store and crop); through a crop id in its image's or label's
file name (`crop247`, `<store>_crop247`, each with an optional nnU-Net channel suffix `_0000`, as the
field's converter named its files); and else by its content: its first voxels searched for in the raw
levels near the crops whose shapes match it (`cellcheck.cellmap.locate.place_by_content`). Entries
that stay unplaced are one `source-missing` line for the datalist, those placed by content one
`source-placed` line naming the crop, level and offset each matched.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from cellcheck.cellmap.locate import PROBE, CropBox, Placement, crop_boxes, place_by_content, probe_at
from cellcheck.cellmap.stores import find_stores_or_fail, open_store
from cellcheck.checks.conversion import against_source, first_corner
from cellcheck.classes import ClassMap
from cellcheck.datalist import case_id
from cellcheck.errors import CellcheckError
from cellcheck.findings import Finding, finding
from cellcheck.readers.volume import ReadError, Volume

_CROP = re.compile(r"^(?:(?P<store>.+?)_)?(?P<crop>crop\d+)(?:_\d{4})?$")


@dataclass
class SourceResult:
    """What checking one entry against its source gave: findings, and how it was placed (or why not)."""

    findings: list[Finding] = field(default_factory=list)
    missing: str | None = None  # why no crop was found for it
    placed: str | None = None  # the crop, level and offset its content matched (placed by content only)


@dataclass
class Sources:
    """The source stores (by folder name), which stores hold each crop id, the datalist's provenance, and
    (when some entry's name and provenance place it nowhere) every crop's box for the content search."""

    root: Path
    stores: dict[str, Path]
    crops: dict[str, list[Path]]
    provenance: dict[str, dict[str, Any]] = field(default_factory=dict)
    boxes: list[CropBox] | None = None

    @classmethod
    def index(cls, root: Path, datalist: Path, entries: Sequence[tuple[str, str, str]] = (),
              classes: ClassMap | None = None) -> "Sources":
        """Index the stores under `root`; `entries` (case, image, label) say whether a content search may be needed."""
        stores: dict[str, Path] = {}
        crops: dict[str, list[Path]] = {}
        open_store.cache_clear()
        for path in find_stores_or_fail(Path(root)):
            try:
                store = open_store(path)
            except ReadError:
                continue  # `cellcheck audit STORES` reports it; entries from it become source-missing
            stores[path.name] = path
            for crop in store.crop_paths:
                crops.setdefault(crop, []).append(path)
        if not stores:
            raise CellcheckError(f"{root}: no readable CellMap store for --source; pass the folder the crops came from")
        out = cls(Path(root), stores, crops, _provenance(datalist))
        if classes is not None and any(not isinstance(out.locate(*e), tuple) for e in entries):
            out.boxes = [b for p in stores.values() for b in crop_boxes(open_store(p), classes)]
        return out

    def record(self, case: str, image: str) -> dict[str, Any] | None:
        """The provenance of an entry: by its image path (renamed cases keep theirs), else by its case id."""
        by_image = next((r for r in self.provenance.values() if r.get("image") == image), None)
        return by_image or self.provenance.get(case)

    def locate(self, case: str, image: str = "", label: str = "") -> tuple[Path, str] | str | list[tuple[Path, str]]:
        """(store, crop id) of an entry by provenance or name; else why not (a string), or every (store, crop)
        holding the crop id its name gives, when several do (a list: its content decides)."""
        prov = self.record(case, image)
        if prov:
            crop, store = prov.get("crop"), prov.get("store")
            if store in self.stores and crop in self.crops and self.stores[store] in self.crops[crop]:
                return self.stores[store], crop
            holders = self.crops.get(crop, [])
            if len(holders) == 1:
                return holders[0], crop
            return f"its provenance names {crop} of {store}, which is not under {self.root}"
        names = [m for m in (_CROP.match(n) for n in (case, case_id(label) if label else "")) if m]
        if not names:
            return "no provenance, and no crop id (cropN) in its file names"
        crop, prefix = names[0].group("crop"), next((m.group("store") for m in names if m.group("store")), None)
        holders = self.crops.get(crop, [])
        if prefix:
            holders = [p for p in holders if p.name.removesuffix(".zarr") == prefix] or holders
        if not holders:
            return f"no store holds the {crop} its name gives"
        if len(holders) > 1:
            return [(p, crop) for p in holders]
        return holders[0], crop

    def check(self, case: str, shown: dict[str, str], image: Volume, label: Volume, names: list[str] | None,
              classes: ClassMap, max_bytes: int) -> SourceResult:
        """Every source finding of one entry, and how it was placed (or why it could not be)."""
        where = self.locate(case, shown["image"], shown["label"])
        out = SourceResult()
        if not isinstance(where, tuple):
            try:
                placement = self._by_content(image, label, classes, max_bytes,
                                             only=where if isinstance(where, list) else None)
            except ReadError:
                return out  # the entry's own checks report the unreadable file
            if placement is None:
                out.missing = (f"its crop id is in {len(where)} stores ({', '.join(p.name for p, _ in where)}) and its "
                               "voxels match none of them" if isinstance(where, list) else
                               f"{where}, and its voxels were found near no crop of a matching shape")
                return out
            where = (placement.store, placement.crop)
            out.placed = placement.describe()
        store = open_store(where[0])
        crop = store.open_crop(where[1], only=classes.names)
        try:
            out.findings = against_source(case, shown, image, label, names, store, crop,
                                          self.record(case, shown["image"]), classes, max_bytes)
        except ReadError:
            pass  # the entry's own checks report the unreadable file
        return out

    def _by_content(self, image: Volume, label: Volume, classes: ClassMap, max_bytes: int,
                    only: list[tuple[Path, str]] | None) -> Placement | None:
        """Place an entry by its voxels: its first corner searched for near the crops whose shapes match."""
        boxes = [b for b in self.boxes or () if only is None or (b.store, b.crop) in only]
        if not boxes:
            return None
        image_corner, label_corner = first_corner(image), first_corner(label)
        at = probe_at(label_corner)
        box = tuple(slice(a, a + PROBE) for a in at)
        shapes = [tuple(int(n) for n in v.header.shape[:3]) for v in (image, label)]
        return place_by_content(image_corner[box], label_corner[box], at, shapes, boxes, classes, max_bytes)


def summary(path: Path, results: Sequence[tuple[str, SourceResult]], total: int) -> list[Finding]:
    """One source-missing line for the entries no crop was found for, one source-placed line for those placed by content."""
    out = []
    missing = [(case, r.missing) for case, r in results if r.missing]
    if missing:
        by_reason: dict[str, list[str]] = {}
        for case, why in missing:
            by_reason.setdefault(why, []).append(case)
        parts = [f"{_some(cases)}: {why}" for why, cases in by_reason.items()]
        out.append(finding(
            "source-missing", None, path,
            f"{len(missing)} of {total} cases not checked against a source ({'; '.join(parts[:5])}"
            f"{'; ...' if len(parts) > 5 else ''}); name their files after their crops (cropN or <store>_cropN) or "
            "keep cellcheck convert's provenance", cases=dict(missing)))
    placed = [(case, r.placed) for case, r in results if r.placed]
    if placed:
        out.append(finding(
            "source-placed", None, path,
            f"{len(placed)} of {total} cases placed by their voxels, their names giving no crop: "
            + "; ".join(f"{case} is {where}" for case, where in placed[:5]) + ("; ..." if len(placed) > 5 else ""),
            cases=dict(placed)))
    return out


def _some(cases: list[str]) -> str:
    return ", ".join(cases[:4]) + (f" and {len(cases) - 4} more" if len(cases) > 4 else "")


def _provenance(datalist: Path) -> dict[str, dict[str, Any]]:
    """The `cellcheck.cases` provenance `cellcheck convert` writes into the datalist, keyed by case (else {})."""
    try:
        data = json.loads(datalist.read_text())
        cases = data["cellcheck"]["cases"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {k: v for k, v in cases.items() if isinstance(v, dict)} if isinstance(cases, dict) else {}
