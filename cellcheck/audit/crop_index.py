"""`cellcheck audit DATALIST --source STORES`: each entry checked against the CellMap crop it came from.

An entry maps to its crop through the provenance `cellcheck convert` writes into the datalist (the
`cellcheck.cases` key: image path, store and crop), else through the crop id in its file name
(`crop247.nii.gz`, or `<store>_crop247` when crop ids repeat across stores).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellcheck.cellmap.stores import find_stores_or_fail, open_store
from cellcheck.checks.conversion import against_source
from cellcheck.classes import ClassMap
from cellcheck.errors import CellcheckError
from cellcheck.findings import Finding, finding
from cellcheck.readers.volume import ReadError, Volume

_CROP = re.compile(r"^(?:(?P<store>.+?)_)?(?P<crop>crop\d+)$")


@dataclass
class Sources:
    """The source stores (by folder name), which stores hold each crop id, and the datalist's provenance."""

    root: Path
    stores: dict[str, Path]
    crops: dict[str, list[Path]]
    provenance: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def index(cls, root: Path, datalist: Path) -> "Sources":
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
        return cls(Path(root), stores, crops, _provenance(datalist))

    def record(self, case: str, image: str) -> dict[str, Any] | None:
        """The provenance of an entry: by its image path (renamed cases keep theirs), else by its case id."""
        by_image = next((r for r in self.provenance.values() if r.get("image") == image), None)
        return by_image or self.provenance.get(case)

    def locate(self, case: str, image: str = "") -> tuple[Path, str] | str:
        """(store, crop id) of an entry, or why it has none."""
        prov = self.record(case, image)
        if prov:
            crop, store = prov.get("crop"), prov.get("store")
            if store in self.stores and crop in self.crops and self.stores[store] in self.crops[crop]:
                return self.stores[store], crop
            holders = self.crops.get(crop, [])
            if len(holders) == 1:
                return holders[0], crop
            return f"its provenance names {crop} of {store}, which is not under {self.root}"
        m = _CROP.match(case)
        if not m:
            return f"its name holds no crop id (cropN) and the datalist has no provenance for it"
        crop, prefix = m.group("crop"), m.group("store")
        holders = self.crops.get(crop, [])
        if prefix:
            holders = [p for p in holders if p.name.removesuffix(".zarr") == prefix] or holders
        if not holders:
            return f"no store under {self.root} holds {crop}"
        if len(holders) > 1:
            return f"{crop} is in {len(holders)} stores ({', '.join(p.name for p in holders)}); name the file <store>_{crop}"
        return holders[0], crop

    def check(self, case: str, shown: dict[str, str], image: Volume, label: Volume, names: list[str] | None,
              classes: ClassMap, max_bytes: int) -> list[Finding]:
        """Every source finding of one entry (source-missing when it maps to no crop)."""
        where = self.locate(case, shown["image"])
        if isinstance(where, str):
            return [finding("source-missing", case, shown["image"], f"not checked against a source: {where}")]
        store = open_store(where[0])
        crop = store.open_crop(where[1], only=classes.names)
        try:
            return against_source(case, shown, image, label, names, store, crop, self.record(case, shown["image"]),
                                  classes, max_bytes)
        except ReadError:
            return []  # the entry's own checks report the unreadable file


def _provenance(datalist: Path) -> dict[str, dict[str, Any]]:
    """The `cellcheck.cases` provenance `cellcheck convert` writes into the datalist, keyed by case (else {})."""
    try:
        data = json.loads(datalist.read_text())
        cases = data["cellcheck"]["cases"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {k: v for k, v in cases.items() if isinstance(v, dict)} if isinstance(cases, dict) else {}
