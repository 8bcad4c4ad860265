"""Small helpers for tests that read and rewrite generated datasets."""

import json
from pathlib import Path

from cellcheck.readers.zarr_compat import ZARR_MAJOR

#: zarr 2 (beside the CellMap toolbox) reads format 2 only: the v3 flavour of dataset 2 is then written as v2.
V3 = ZARR_MAJOR >= 3


def expected(root: Path) -> dict:
    return json.loads((root / "expected.json").read_text())


def read_datalist(root: Path) -> dict:
    return json.loads((root / "datalist.json").read_text())


def write_datalist(root: Path, obj: dict, name: str = "datalist.json") -> Path:
    p = root / name
    p.write_text(json.dumps(obj, indent=1))
    return p
