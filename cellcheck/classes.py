"""Which classes a model learns (the class map) and the CellMap canonical class table behind them.

Two numberings meet here and must never be confused:

- **canonical ids** (1..74, CellMap's `classes.csv`, shipped in `cellcheck/data/`): what a crop's
  dense `all` array holds (the most granular annotated class at each voxel), and how group
  classes (nuc = 20..29, mito = 3..5, ...) are defined;
- **training label values** (1..C, 0 background): what a converted label image holds; label value k
  is output channel k - 1 of the network and item k - 1 of `annotated_classes`.

A `ClassMap` lists the C training classes in channel order. The default is the field's 14 classes;
`--classes FILE` (a YAML list of names, or a CSV with one name per line or a `name` column) trains
another set, e.g. `cellcheck/data/tested_classes.csv` (the 48 classes the challenge scores). The audit,
stats, memory prediction, the loss and the trainer all read the same map.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

import yaml

from cellcheck.errors import CellcheckError

#: CellMap classes whose arrays hold object ids 1..N (encoding {absent: 0, unknown: 255}), not 0/1.
INSTANCE_CLASSES: frozenset[str] = frozenset({"nuc", "mito", "ves", "endo", "lyso", "ld", "perox", "np", "mt", "cell"})

#: The field's 14 training classes, in channel order (label value = position + 1).
FIELD_CLASSES: tuple[str, ...] = (
    "ecs", "pm", "mito_mem", "mito_lum", "mito_ribo", "golgi_mem", "golgi_lum",
    "ves_mem", "ves_lum", "endo_mem", "endo_lum", "er_mem", "er_lum", "nuc",
)


@dataclass(frozen=True)
class CanonicalClass:
    """One row of CellMap's classes.csv: a name, its id, and the atomic ids it groups (empty if atomic)."""

    name: str
    id: int
    members: frozenset[int]


@lru_cache(maxsize=1)
def canonical_classes() -> dict[str, CanonicalClass]:
    """CellMap's canonical class table by name (classes.csv of the challenge toolbox, package data)."""
    text = resources.files("cellcheck.data").joinpath("classes.csv").read_text()
    rows = csv.DictReader(line for line in io.StringIO(text) if not line.startswith("#"))
    out = {}
    for row in rows:
        members = frozenset(int(v) for v in row["members"].split(",") if v.strip())
        out[row["name"]] = CanonicalClass(row["name"], int(row["id"]), members)
    return out


def canonical_names() -> dict[int, str]:
    """Canonical id -> class name."""
    return {c.id: c.name for c in canonical_classes().values()}


@dataclass(frozen=True)
class ClassMap:
    """The training classes in channel order; label value of `names[k]` is k + 1."""

    names: tuple[str, ...]
    source: str = "default (the field's 14 classes)"

    def __post_init__(self) -> None:
        if not self.names:
            raise CellcheckError(f"{self.source}: the class map lists no class; list at least one class name")
        table = canonical_classes()
        unknown = [n for n in self.names if n not in table]
        if unknown:
            raise CellcheckError(
                f"{self.source}: {', '.join(map(repr, unknown[:5]))} not a CellMap class (classes.csv); "
                "use the canonical names, e.g. mito_mem, er_lum, nuc"
            )
        repeated = sorted({n for n in self.names if self.names.count(n) > 1})
        if repeated:
            raise CellcheckError(f"{self.source}: {', '.join(repeated)} listed twice; list each class once")

    def __len__(self) -> int:
        return len(self.names)

    @property
    def label_value(self) -> dict[str, int]:
        """Class name -> training label value (1-based; 0 is background)."""
        return {n: i + 1 for i, n in enumerate(self.names)}

    @property
    def canonical_ids(self) -> tuple[int, ...]:
        """CellMap canonical id of each class, in channel order."""
        table = canonical_classes()
        return tuple(table[n].id for n in self.names)

    def channels_of(self, names: Iterable[str]) -> frozenset[int]:
        """Output channels of the names this map trains (other names are ignored)."""
        index = {n: i for i, n in enumerate(self.names)}
        return frozenset(index[n] for n in names if n in index)

    def overlapping(self) -> list[tuple[str, str]]:
        """Pairs of classes that share voxels (a group and one of its members): one label image cannot hold both."""
        table = canonical_classes()
        atoms = {n: table[n].members or frozenset({table[n].id}) for n in self.names}
        return [(a, b) for i, a in enumerate(self.names) for b in self.names[i + 1:] if atoms[a] & atoms[b]]


DEFAULT_CLASS_MAP = ClassMap(FIELD_CLASSES)

# Module-level names of the default map, for code that trains the field's classes.
CLASS_NAMES: tuple[str, ...] = DEFAULT_CLASS_MAP.names
NUM_CLASSES = len(CLASS_NAMES)
#: label value of each class name (1-based; 0 is background).
LABEL_VALUE: dict[str, int] = DEFAULT_CLASS_MAP.label_value


def load_class_map(path: Path | str | None) -> ClassMap:
    """The class map in `path` (YAML list or CSV of names), or the default map when `path` is None."""
    if path is None:
        return DEFAULT_CLASS_MAP
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise CellcheckError(f"{path}: cannot read the class map ({exc.strerror or exc}); pass a readable --classes file")
    return ClassMap(tuple(_names(path, text)), source=str(path))


def _names(path: Path, text: str) -> Sequence[str]:
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise CellcheckError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); write a list of class names")
        if isinstance(data, dict):
            data = data.get("classes")
        if not isinstance(data, list) or not all(isinstance(n, str) for n in data):
            raise CellcheckError(f"{path}: expected a YAML list of class names (or `classes: [...]`), e.g. [ecs, pm, nuc]")
        return [n.strip() for n in data]
    rows = [r for r in csv.reader(line for line in io.StringIO(text) if line.strip() and not line.startswith("#"))]
    if rows and "name" in [c.strip() for c in rows[0]]:
        col = [c.strip() for c in rows[0]].index("name")
        return [r[col].strip() for r in rows[1:] if len(r) > col]
    return [r[0].strip() for r in rows if r]
