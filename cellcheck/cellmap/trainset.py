"""Which crops of a folder of CellMap stores train, which validate, and how each is read at one resolution.

Training straight from the stores needs the decisions `cellcheck convert` makes, made the same way
and before the first step: every crop is planned at the training resolution (`plan_crop`: levels
paired by voxel size, on the raw grid, raw chunks under it; with `resample` a crop without a label
level there is mode-reduced or repeated from another), and a crop that cannot train there is refused
with the audit's reason. The split is a `csc make-datasplit` CSV when given (its `usage` column, and
its bracketed class list: a listed class is what that crop is asked to train, so a class it annotates
but does not list is unknown there), else folds assigned as convert assigns them. The result is
recorded in the run folder so that a resumed run trains on the same crops.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cellcheck.cellmap.plan import PlanOptions, Refused, plan_crop
from cellcheck.cellmap.stores import case_names, find_stores_or_fail, open_store
from cellcheck.classes import ClassMap
from cellcheck.errors import CellcheckError
from cellcheck.files import write_atomic
from cellcheck.findings import Finding, finding
from cellcheck.grid import format_scale
from cellcheck.readers.volume import ReadError
from cellcheck.readers.zarr_compat import storage_chunks
from cellcheck.stratify import assign_folds, auto_folds, natural_key

_SPLIT_CROP = re.compile(r"(?:^|/)(crop\d+)(?:/\[(?P<classes>[^\]]*)\])?/?$")


@dataclass(frozen=True)
class StoreCase:
    """One crop that trains or validates: where it is, and the classes of the map it is trained for."""

    case: str  # the crop id, or <store>_<crop> where ids repeat across stores
    store: str  # the store's path
    crop: str
    usage: str  # "train" or "validate"
    classes: tuple[str, ...]
    resampled: str | None = None  # "mode" or "nearest" when the crop has no label level at the resolution


@dataclass(frozen=True)
class SplitRow:
    """One row of a `csc make-datasplit` CSV."""

    line: int
    usage: str
    gt_store: Path
    crop: str
    classes: tuple[str, ...] | None  # None: the row lists no classes


@dataclass
class TrainingSet:
    """The crops a run trains and validates on, at `resolution` (nm, z y x), and what was left out, why."""

    root: str
    resolution: tuple[float, ...]
    classes: tuple[str, ...]
    split: str  # how the split was made, for people
    cases: list[StoreCase] = field(default_factory=list)
    refused: list[Finding] = field(default_factory=list)  # crops that cannot train at the resolution
    resamplable: list[str] = field(default_factory=list)  # refused crops that `resample` would let train
    excluded: list[str] = field(default_factory=list)  # by exclude_crops, or absent from the datasplit
    #: what reading a patch touches, at worst over the crops: chunk shapes, bytes per voxel, label voxels per voxel
    reads: dict[str, list[int] | int] = field(default_factory=lambda: {
        "raw_chunk": [1, 1, 1], "raw_bytes": 1, "label_chunk": [1, 1, 1], "label_bytes": 1, "label_factor": [1, 1, 1]})

    @property
    def train(self) -> list[StoreCase]:
        return [c for c in self.cases if c.usage == "train"]

    @property
    def validate(self) -> list[StoreCase]:
        return [c for c in self.cases if c.usage == "validate"]

    def to_json(self) -> dict[str, Any]:
        return {"root": self.root, "resolution": list(self.resolution), "classes": list(self.classes),
                "split": self.split, "cases": [asdict(c) for c in self.cases],
                "refused": [f.to_json() for f in self.refused], "resamplable": list(self.resamplable),
                "excluded": list(self.excluded), "reads": dict(self.reads)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TrainingSet":
        cases = [StoreCase(**{**c, "classes": tuple(c["classes"])}) for c in data["cases"]]
        refused = [finding(f["check"], f["case"], f["path"], f["message"], **f["details"]) for f in data["refused"]]
        out = cls(data["root"], tuple(data["resolution"]), tuple(data["classes"]), data["split"], cases, refused,
                  list(data.get("resamplable", [])), list(data["excluded"]))
        out.reads.update(data.get("reads", {}))
        return out


def plan_training_set(root: Path, resolution: Sequence[float], classes: ClassMap, *, fold: int = 0,
                      datasplit: Path | None = None, exclude: Sequence[str] = (), resample: bool = False) -> TrainingSet:
    """Plan every crop under `root` at `resolution` and split them; metadata and chunk listings only.

    Raises CellcheckError (one line naming the file and the fix) for an empty folder, a datasplit that
    cannot be read or names a store that is not under `root`, or a name in `exclude` that is no crop.
    """
    root, resolution = Path(root), tuple(float(r) for r in resolution)
    found = _crops(root)
    names = dict(zip(case_names([(p, c) for p, c in found]), found))
    unknown = [n for n in exclude if n not in names and not any(c == n for _, c in found)]
    if unknown:
        raise CellcheckError(f"exclude_crops names {', '.join(unknown[:5])}, which no store under {root} holds; "
                             f"crops are named like {next(iter(names), 'crop1')}")
    rows = read_datasplit(datasplit, root, found) if datasplit is not None else None
    out = TrainingSet(str(root), resolution, classes.names,
                      f"datasplit {datasplit}" if datasplit is not None else f"folds, fold {fold} validates")
    planned: dict[str, tuple[StoreCase, frozenset[int]]] = {}
    for case, (path, crop_id) in sorted(names.items(), key=lambda kv: natural_key(kv[0])):
        if case in exclude or crop_id in exclude:
            out.excluded.append(case)
            continue
        row = rows.get((path, crop_id)) if rows is not None else None
        if rows is not None and row is None:
            out.excluded.append(case)  # not in the datasplit
            continue
        try:
            store = open_store(path)
            crop = store.open_crop(crop_id, only=classes.names)
            plan = plan_crop(case, store, crop, PlanOptions(resolution, classes, upsample=resample))
        except Refused as exc:
            out.refused.append(exc.finding)
            if not resample and _trains_resampled(case, store, crop, resolution, classes):
                out.resamplable.append(case)
            continue
        except ReadError as exc:
            out.refused.append(finding("unreadable", case, exc.path, f"{exc.reason}; re-download this crop"))
            continue
        trained = tuple(n for n in plan.classes if row is None or row.classes is None or n in row.classes)
        if not trained:
            out.refused.append(finding("empty-annotation", case, crop.path,
                                       f"the datasplit (line {row.line}) asks for {', '.join(row.classes or ())}, none of "
                                       f"which this crop annotates; fix the row or drop it"))
            continue
        resampled = "mode" if max(plan.down) > 1 else "nearest" if max(plan.up) > 1 else None
        _note_reads(out.reads, store, crop, plan, trained)
        usage = row.usage if row is not None else "train"
        planned[case] = (StoreCase(case, str(path), crop_id, usage, trained, resampled),
                         classes.channels_of(crop.present(trained)))
    if rows is None and planned:  # folds spread the crops where each class is present, by their metadata
        present = {case: chans for case, (_, chans) in planned.items()}
        annotated = {case: frozenset(classes.channels_of(c.classes)) for case, (c, _) in planned.items()}
        fold_of, _ = assign_folds(present, auto_folds(annotated))
        planned = {case: (_with_usage(c, "validate" if fold_of[case] == fold else "train"), chans)
                   for case, (c, chans) in planned.items()}
    out.cases = [c for c, _ in planned.values()]
    return out


def _note_reads(reads: dict, store, crop, plan, trained: Sequence[str]) -> None:
    """Keep the worst chunk shapes and label factor a patch read can meet (the RAM model sizes a read by them)."""
    def worst(key: str, values) -> None:
        reads[key] = [max(int(a), int(b)) for a, b in zip(reads[key], values)]

    raw = store.raw.group[plan.raw_level.path]
    worst("raw_chunk", storage_chunks(raw))
    reads["raw_bytes"] = max(reads["raw_bytes"], np.dtype(raw.dtype).itemsize)
    for name in trained:
        arr = crop.classes[name].group[plan.label_level.path]
        worst("label_chunk", storage_chunks(arr))
        reads["label_bytes"] = max(reads["label_bytes"], np.dtype(arr.dtype).itemsize)
    worst("label_factor", plan.down)


def _trains_resampled(case: str, store, crop, resolution: tuple[float, ...], classes: ClassMap) -> bool:
    try:
        plan_crop(case, store, crop, PlanOptions(resolution, classes, upsample=True))
    except Refused:
        return False
    return True


def _with_usage(case: StoreCase, usage: str) -> StoreCase:
    return StoreCase(case.case, case.store, case.crop, usage, case.classes, case.resampled)


def _crops(root: Path) -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    for path in find_stores_or_fail(root):
        try:
            store = open_store(path)
        except ReadError:
            continue  # the audit reports the unreadable store; it holds no crop to train
        found += [(path, crop) for crop in store.crop_paths]
    if not found:
        raise CellcheckError(f"{root}: the CellMap stores here hold no ground-truth crop; pass the folder of the stores "
                             "you downloaded (csc fetch-data)")
    return found


def read_datasplit(path: Path, root: Path, found: list[tuple[Path, str]]) -> dict[tuple[Path, str], SplitRow]:
    """The rows of a `csc make-datasplit` CSV, keyed by (store, crop id) of the stores under `root`.

    Raises CellcheckError naming the line when a row cannot be read or names a store not under `root`.
    """
    stores = {p for p, _ in found}
    by_name = {p.name: p for p in stores}
    try:
        lines = list(csv.reader(Path(path).read_text(encoding="utf-8").splitlines()))
    except (OSError, UnicodeDecodeError) as exc:
        raise CellcheckError(f"{path}: cannot read the datasplit ({exc}); give the CSV csc make-datasplit wrote") from None
    rows: dict[tuple[Path, str], SplitRow] = {}
    for number, cells in enumerate(lines, 1):
        if not cells or not "".join(cells).strip():
            continue
        where = f"{path}, line {number}"
        if len(cells) != 5 or cells[0] not in ("train", "validate"):
            raise CellcheckError(f"{where}: expected usage,raw store,raw group,gt store,crop path (usage train or "
                                 "validate), as csc make-datasplit writes it")
        match = _SPLIT_CROP.search(cells[4].strip())
        if match is None:
            raise CellcheckError(f"{where}: {cells[4]!r} names no crop (.../groundtruth/cropN[/[classes]])")
        gt = Path(cells[3])
        store = next((s for s in stores if s.resolve() == gt.resolve()), None) or by_name.get(gt.name)
        if store is None:
            raise CellcheckError(f"{where}: the store {gt} is not under {root}; fetch it, or drop the row")
        listed = match.group("classes")
        names = tuple(n.strip() for n in listed.split(",") if n.strip()) if listed is not None else None
        rows[(store, match.group(1))] = SplitRow(number, cells[0], store, match.group(1), names)
    if not rows:
        raise CellcheckError(f"{path}: the datasplit lists no crop")
    return rows


def record(training: TrainingSet, path: Path) -> None:
    """Write the training set where a resumed run finds it (the run folder's split.json)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(training.to_json(), indent=1) + "\n")


def describe(training: TrainingSet) -> str:
    """One line: how many crops train and validate at which resolution, and how many were left out."""
    parts = [f"{len(training.train)} training / {len(training.validate)} validation crops at "
             f"{format_scale(training.resolution)} ({training.split})"]
    if training.excluded:
        parts.append(f"{len(training.excluded)} excluded")
    if training.refused:
        parts.append(f"{len(training.refused)} refused")
    return ", ".join(parts)
