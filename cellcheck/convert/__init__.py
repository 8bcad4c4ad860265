"""`cellcheck convert`: CellMap crops -> NIfTI image/label pairs at one training resolution + a MONAI datalist.

Crop and raw levels pair by voxel size (never by level name), labels come from the crop's own class
arrays at that resolution, every header carries the true voxel size and origin, a class partly
unknown in a crop is left out of its `annotated_classes` (the loss masks classes per crop, so its
unknown voxels would otherwise train as background), and every crop that cannot convert is refused
with the audit's reason. Provenance lands in the datalist (`cellcheck` key, which MONAI ignores) and
in one record per case, so `cellcheck audit DATALIST --source STORES` can check the result.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellcheck import __version__
from cellcheck.cellmap.stores import case_names, find_stores_or_fail, open_store
from cellcheck.convert.case import Job, Outcome, convert_case, output_paths
from cellcheck.stratify import assign_folds, auto_folds, natural_key
from cellcheck.convert.options import Options
from cellcheck.convert.records import RECORD_VERSION, load_record, owned
from cellcheck.errors import CellcheckError
from cellcheck.findings import finding
from cellcheck.grid import format_scale
from cellcheck.parallel import map_cases
from cellcheck.readers.volume import ReadError
from cellcheck.files import write_atomic

__all__ = ["ConvertResult", "Options", "convert", "DATALIST_NAME"]

DATALIST_NAME = "datalist.json"
#: Voxel data one worker holds while converting a crop (a slab of the output and its sources).
DEFAULT_CONVERT_BYTES = 256 * 2**20


@dataclass
class ConvertResult:
    out: Path
    datalist: Path | None
    outcomes: list[Outcome]
    folds: int = 0
    uncovered: list[str] = field(default_factory=list)  # classes present (or, unsaid, annotated) in too few crops for every fold

    @property
    def converted(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.record is not None and not o.skipped]

    @property
    def unchanged(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.skipped]

    @property
    def refused(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.refused is not None]

    def exit_code(self, strict: bool = False) -> int:
        """0: datalist written; 1: no crop converted, or (strict) a crop refused."""
        return 1 if self.datalist is None or (strict and self.refused) else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "out": str(self.out), "datalist": str(self.datalist) if self.datalist else None,
            "converted": sorted((o.case for o in self.converted), key=natural_key),
            "unchanged": sorted((o.case for o in self.unchanged), key=natural_key),
            "refused": [o.refused.to_json() for o in self.refused],
            "notes": {o.case: o.notes for o in self.outcomes if o.notes},
            "folds": self.folds, "classes_not_in_every_fold": self.uncovered,
        }


def convert(root: Path, out: Path, opts: Options, *, folds: int | None = None, jobs: int = 1,
            progress: bool = False, max_bytes: int = DEFAULT_CONVERT_BYTES, overwrite: bool = False) -> ConvertResult:
    """Convert every crop of the stores under `root` into `out` (imagesTr/, labelsTr/, datalist.json).

    `folds` None: as many (2..5) as the rarest class allows, so every fold can validate every class.
    """
    root, out = Path(root), Path(out)
    if not root.exists():
        raise CellcheckError(f"{root}: no such file or directory; pass the folder holding the CellMap stores (*.zarr)")
    _check_classes(opts)
    refs, outcomes = _crops(root)
    _check_out(out, [c for c, _, _ in refs], overwrite)
    jobs_list = [Job(case, store, crop, out, opts, max_bytes) for case, store, crop in refs]
    open_store.cache_clear()  # forked workers open what they need
    outcomes += list(map_cases(convert_case, jobs_list, jobs, progress, what="crops", verb="converting"))
    outcomes.sort(key=lambda o: natural_key(o.case))
    done = [o for o in outcomes if o.record is not None]
    result = ConvertResult(out, None, outcomes)
    if not done:
        return result
    annotated = {o.case: frozenset(o.record.channels) for o in done}
    present = {o.case: o.present if o.present is not None else annotated[o.case] for o in done}
    fold_of, missing = assign_folds(present, folds or auto_folds(annotated))
    result.folds = max(fold_of.values()) + 1
    result.uncovered = [opts.classes.names[c] for c in missing]
    result.datalist = out / DATALIST_NAME
    write_atomic(result.datalist, json.dumps(_datalist(opts, done, fold_of, outcomes, result.folds), indent=1) + "\n")
    return result


def _check_classes(opts: Options) -> None:
    overlaps = opts.classes.overlapping()
    if overlaps:
        a, b = overlaps[0]
        raise CellcheckError(f"{opts.classes.source}: {a} and {b} share voxels, and one label image holds one class per "
                             "voxel; train one of them (or convert twice)")
    if len(opts.classes) > 254:
        raise CellcheckError(f"{opts.classes.source}: {len(opts.classes)} classes do not fit a uint8 label; list at most 254")


def _crops(root: Path) -> tuple[list[tuple[str, Path, str]], list[Outcome]]:
    """(case, store, crop id) of every crop under `root`, and outcomes for what cannot even be listed."""
    found: list[tuple[Path, str]] = []
    outcomes: list[Outcome] = []
    open_store.cache_clear()
    for path in find_stores_or_fail(root):
        try:
            store = open_store(path)
        except ReadError as exc:
            outcomes.append(Outcome(path.name, refused=finding("unreadable", None, path, exc.reason)))
            continue
        found += [(path, crop) for crop in store.crop_paths]
        # crops on disk that the store's reader cannot see (another format, group metadata lost): refused, by name
        outcomes += [Outcome(f.case, refused=f) for f in store.findings if f.case in store.foreign_crops]
    refs = [(case, path, crop) for case, (path, crop) in zip(case_names(found), found)]
    return refs, outcomes


def _check_out(out: Path, cases: list[str], overwrite: bool) -> None:
    """Refuse (exit 2) to replace files that no record of ours lists, unless --overwrite."""
    if out.exists() and not out.is_dir():
        raise CellcheckError(f"{out}: exists and is not a folder; choose another --output-dir")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CellcheckError(f"{out}: cannot create the output folder ({exc.strerror or exc}); choose another --output-dir")
    if overwrite:
        return
    foreign = []
    dl = out / DATALIST_NAME
    if dl.exists() and not _ours(dl):
        foreign.append(dl)
    for case in cases:
        record = load_record(out, case)
        foreign += [out / rel for rel in output_paths(case) if not owned(out, rel, record)]
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise CellcheckError(f"{foreign[0]}{more}: exists and was not written by cellcheck convert, or was changed "
                             "since; not overwritten: move it away, choose another --output-dir, or pass --overwrite")


def _ours(datalist: Path) -> bool:
    try:
        data = json.loads(datalist.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("cellcheck"), dict) and "convert" in data["cellcheck"]


def _datalist(opts: Options, done: list[Outcome], fold_of: dict[str, int], outcomes: list[Outcome],
              folds: int) -> dict[str, Any]:
    names = opts.classes.names
    training = []
    for o in done:
        r = o.record
        training.append({"image": r.image.path, "label": r.label.path, "fold": fold_of[o.case],
                         "annotated_classes": ",".join(map(str, r.channels))})
    return {
        "name": "cellmap-crops",
        "description": f"CellMap crops converted at {format_scale(opts.resolution)} by cellcheck {__version__}",
        "labels": {"0": "background", **{str(i + 1): n for i, n in enumerate(names)}},
        "training": training,
        # MONAI's datafold_read reads only `training`: this key is provenance for `cellcheck audit --source`
        "cellcheck": {
            "convert": RECORD_VERSION, "resolution": list(opts.resolution), "classes": list(names), "folds": folds,
            "cases": {o.case: {"image": o.record.image.path, "label": o.record.label.path,
                               "store": o.record.store_name, "store_path": o.record.store, "crop": o.record.crop,
                               **o.record.plan, "annotated": o.record.annotated, "dropped": o.record.dropped}
                      for o in done},
            "refused": {o.case: {"check": o.refused.check, "message": o.refused.message} for o in outcomes
                        if o.refused is not None},
        },
    }
