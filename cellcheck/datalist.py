"""MONAI datalists: load the JSON, validate every entry at once with a pandera schema, name each case.

A datalist is `{"training": [...], "validation": [...]?, "testing": [...]?}`; each entry has
`image`, `label`, optional `fold` and `annotated_classes`, with paths relative to the data root.
Whole-file problems (unreadable, not JSON, not a datalist) raise CellcheckError; problems of
single entries become `datalist-invalid` findings so every bad entry is reported at once.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa

from cellcheck.errors import CellcheckError
from cellcheck.findings import Finding, finding

SECTIONS = ("training", "validation")
_SUFFIXES = re.compile(r"(\.nii\.gz|\.nii|\.zarr|\.n5)$", re.IGNORECASE)
_MISSING = object()


@dataclass
class Entry:
    """One datalist entry as written; `fold` is None when the key is absent or invalid."""

    section: str
    index: int
    case: str
    image: str | None
    label: str | None
    fold: int | None
    has_fold: bool
    annotated_classes: Any = None
    has_annotated_classes: bool = False
    valid: bool = True

    @property
    def where(self) -> str:
        return f"{self.section}[{self.index}]"


@dataclass
class Datalist:
    path: Path
    dataroot: Path
    entries: list[Entry]
    findings: list[Finding] = field(default_factory=list)

    @property
    def cases(self) -> dict[str, Entry]:
        """One entry per case, in datalist order: the unit audit, stats and predict all count.

        A case is an image (its case id, the file name without suffix) in `training` or `validation`;
        an entry that repeats one (a duplicated entry, a validation array copying fold 0) is the
        same case again, reported by the audit and counted once.
        """
        out: dict[str, Entry] = {}
        for e in self.entries:
            out.setdefault(e.case, e)
        return out

    def resolve(self, rel: str) -> Path:
        """An entry path on disk: as written if absolute, else under the data root."""
        p = Path(rel)
        return p if p.is_absolute() else self.dataroot / p


def case_id(path: str) -> str:
    """Case id of an image path: its file name without `.nii.gz` / `.nii` / `.zarr` (e.g. `crop247`)."""
    return _SUFFIXES.sub("", Path(path.rstrip("/\\")).name) or path


def _nonempty_path(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip())


def _fold_value(v: Any) -> bool:
    return v is _MISSING or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)


def _classes_value(v: Any) -> bool:
    return v is _MISSING or isinstance(v, str) or (isinstance(v, list) and all(isinstance(i, int) for i in v))


#: The schema of one entry; `_MISSING` marks an absent optional key.
ENTRY_SCHEMA = pa.DataFrameSchema(
    {
        "image": pa.Column(object, pa.Check(_nonempty_path, element_wise=True, error="must be a non-empty path string")),
        "label": pa.Column(object, pa.Check(_nonempty_path, element_wise=True, error="must be a non-empty path string")),
        "fold": pa.Column(object, pa.Check(_fold_value, element_wise=True, error="must be a non-negative integer")),
        "annotated_classes": pa.Column(
            object, pa.Check(_classes_value, element_wise=True, error='must be a string of channel ids such as "0,1,2"')
        ),
    },
    strict=False,
)


def load_datalist(path: Path, dataroot: Path | None = None) -> Datalist:
    """Read and validate a datalist. Raises CellcheckError (exit 2) if the file is not a usable datalist."""
    raw = _read_json(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("training"), list):
        keys = ", ".join(sorted(map(str, raw))[:6]) if isinstance(raw, dict) else type(raw).__name__
        raise CellcheckError(
            f"{path}: not a MONAI datalist (expected an object with a 'training' list; found {keys or 'nothing'}); "
            "fix: write {\"training\": [{\"image\": ..., \"label\": ...}, ...]}"
        )
    root = (dataroot or path.parent).resolve()
    entries: list[Entry] = []
    findings: list[Finding] = []
    rows: list[dict[str, Any]] = []
    for section in SECTIONS:
        items = raw.get(section, [])
        if section != "training" and not isinstance(items, list):
            raise CellcheckError(f"{path}: '{section}' is not a list of entries; fix: make it a list or remove it")
        for i, item in enumerate(items):
            entry, row = _entry(section, i, item)
            entries.append(entry)
            rows.append(row)
            if not isinstance(item, dict):
                findings.append(
                    finding("datalist-invalid", None, path, f"{entry.where} is not an object with image and label",
                            entry=entry.where)
                )
    if not entries:
        raise CellcheckError(f"{path}: the datalist has no entries; fix: list the cases under 'training'")
    findings += _schema_findings(path, entries, rows)
    return Datalist(path=path, dataroot=root, entries=entries, findings=findings)


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CellcheckError(f"{path}: no such file; fix: check the path") from None
    except IsADirectoryError:
        raise CellcheckError(f"{path}: is a directory, not a datalist JSON file") from None
    except PermissionError:
        raise CellcheckError(f"{path}: permission denied; fix: make the datalist readable") from None
    except UnicodeDecodeError as exc:
        raise CellcheckError(f"{path}: not UTF-8 text (byte {exc.start}); fix: save the datalist as UTF-8 JSON") from None
    except OSError as exc:
        raise CellcheckError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CellcheckError(
            f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}; fix the file there"
        ) from None
    except RecursionError:
        raise CellcheckError(f"{path}: JSON nested too deeply to be a datalist") from None


def _entry(section: str, index: int, item: Any) -> tuple[Entry, dict[str, Any]]:
    d = item if isinstance(item, dict) else {}
    image, label = d.get("image"), d.get("label")
    fold = d.get("fold", _MISSING)
    classes = d.get("annotated_classes", _MISSING)
    row = {"image": image, "label": label, "fold": fold, "annotated_classes": classes}
    fold_ok = _fold_value(fold) and fold is not _MISSING
    entry = Entry(
        section=section,
        index=index,
        case=case_id(image) if _nonempty_path(image) else f"{section}[{index}]",
        image=image if _nonempty_path(image) else None,
        label=label if _nonempty_path(label) else None,
        fold=fold if fold_ok else None,
        has_fold=fold is not _MISSING,
        annotated_classes=None if classes is _MISSING else classes,
        has_annotated_classes=classes is not _MISSING,
        valid=isinstance(item, dict),
    )
    return entry, row


def _schema_findings(path: Path, entries: list[Entry], rows: list[dict[str, Any]]) -> list[Finding]:
    """Validate all rows lazily and turn every failure into one `datalist-invalid` finding per entry."""
    frame = pd.DataFrame(rows, columns=list(ENTRY_SCHEMA.columns), dtype=object)
    try:
        ENTRY_SCHEMA.validate(frame, lazy=True)
        return []
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    problems: dict[int, list[str]] = {}
    for rec in cases.to_dict("records"):
        idx = rec.get("index")
        if idx is None or (isinstance(idx, float) and idx != idx):
            continue
        rule = "is missing" if rec["check"] == "not_nullable" else rec["check"]
        problems.setdefault(int(idx), []).append(f"'{rec['column']}' {rule}")
    out = []
    for idx, msgs in sorted(problems.items()):
        entry = entries[idx]
        if not entry.valid:
            continue
        entry.valid = False
        out.append(
            finding("datalist-invalid", entry.case if entry.image else None, path,
                    f"{entry.where}: " + "; ".join(msgs), entry=entry.where)
        )
    return out
