"""Provenance records of converted crops: what was read, what was written, and whether it is still current.

One JSON file per case under `OUT/provenance/`, written (atomically) before the converted files are
moved into place. It names the store, the crop and the levels read, fingerprints the sources (their
metadata and the size and mtime of every chunk file read) and the settings, and lists the sha256 of
the files it wrote. A re-run skips a case whose record matches; it rewrites only files whose hash a
record lists (ours, current or from the conversion before), and refuses to touch any other file.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cellcheck import __version__
from cellcheck.cellmap.plan import CropPlan, PlanOptions
from cellcheck.cellmap.stores import Crop, Store
from cellcheck.readers.zarr_compat import chunk_path_fn, storage_chunks
from cellcheck.files import write_atomic

RECORD_VERSION = 1
RECORDS = "provenance"
STAGING = ".staging"


@dataclass
class OutputFile:
    """A written file: path relative to the output folder, its hash, and its size and mtime when written."""

    path: str
    sha256: str
    size: int
    mtime_ns: int

    def matches(self, root: Path) -> bool:
        """Whether the file on disk is this one: size and mtime (cheap), else its hash."""
        p = root / self.path
        try:
            st = p.stat()
        except OSError:
            return False
        if st.st_size == self.size and st.st_mtime_ns == self.mtime_ns:
            return True
        return st.st_size == self.size and sha256_of(p) == self.sha256


@dataclass
class Record:
    case: str
    store: str  # absolute path of the store
    store_name: str
    crop: str
    settings: dict[str, Any]
    signature: str
    plan: dict[str, Any]
    annotated: list[str]
    channels: list[int]
    dropped: dict[str, str]  # class -> why it is not in annotated_classes
    image: OutputFile
    label: OutputFile
    owned: list[str] = field(default_factory=list)  # sha256 of every file this case's records wrote (recent ones)
    notes: list[str] = field(default_factory=list)
    version: int = RECORD_VERSION
    cellcheck: str = __version__

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Record":
        data = dict(data)
        data["image"], data["label"] = OutputFile(**data["image"]), OutputFile(**data["label"])
        return cls(**data)


def settings_of(opts: PlanOptions) -> dict[str, Any]:
    """What, besides the sources, decides a converted case's content."""
    return {"resolution": list(opts.resolution), "classes": list(opts.classes.names), "upsample": opts.upsample,
            "format": RECORD_VERSION}


def record_path(out: Path, case: str) -> Path:
    return out / RECORDS / f"{case}.json"


def load_record(out: Path, case: str) -> Record | None:
    """The case's record, or None when there is none or it cannot be read (then the case is redone)."""
    try:
        return Record.from_json(json.loads(record_path(out, case).read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def write_record(out: Path, record: Record) -> None:
    p = record_path(out, record.case)
    p.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(p, json.dumps(record.to_json(), indent=1, sort_keys=True) + "\n")


def owned(out: Path, rel: str, record: Record | None) -> bool:
    """Whether the file at `rel` may be replaced: absent, or written by a conversion this record knows."""
    p = out / rel
    if not p.exists():
        return True
    if record is None:
        return False
    current = record.image if record.image.path == rel else record.label if record.label.path == rel else None
    if current is not None and current.matches(out):
        return True
    return sha256_of(p) in set(record.owned)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_of(rel: str, sha: str, staged: Path) -> OutputFile:
    """The record of a staged file about to be moved to `rel` (a move keeps its size and mtime)."""
    st = staged.stat()
    return OutputFile(rel, sha, st.st_size, st.st_mtime_ns)


def signature(store: Store, crop: Crop, plan: CropPlan) -> str:
    """Fingerprint of everything the case is made from: metadata of the crop, its class arrays and the raw
    level, and size + mtime of each chunk file under the regions read."""
    h = hashlib.sha256()
    raw = store.raw
    crop_attrs = dict(store.root[store.crop_paths[crop.id]].attrs)
    parts: list[Any] = [crop_attrs]
    regions = [(raw.group[plan.raw_level.path], dict(raw.group.attrs), tuple(zip(plan.start, plan.stop)))]
    for name in plan.classes:
        arr = crop.classes[name]
        lv = arr.group[plan.label_level.path]
        regions.append((lv, dict(arr.group.attrs), tuple((0, n) for n in lv.shape)))
    for array, group_attrs, region in regions:
        parts.append([group_attrs, dict(array.attrs), list(array.shape), list(array.chunks), str(array.dtype),
                      repr(array.fill_value)])
        h.update(json.dumps(parts, sort_keys=True, default=str).encode())
        parts = []
        path = chunk_path_fn(array)
        if path is None:
            continue
        chunks = storage_chunks(array)
        ranges = [range(a // c, -(-b // c)) for (a, b), c in zip(region, chunks)]
        for idx in itertools.product(*ranges):
            try:
                st = os.stat(path(idx))
                h.update(f"{idx}:{st.st_size}:{st.st_mtime_ns};".encode())
            except OSError:
                h.update(f"{idx}:-;".encode())
    return h.hexdigest()
