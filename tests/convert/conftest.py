"""A correct conversion of the clean fixture stores at 8 nm, made once per session."""

from pathlib import Path

import pytest

from cellcheck.classes import DEFAULT_CLASS_MAP
from cellcheck.convert import Options, convert

EIGHT = (8.0, 8.0, 8.0)


@pytest.fixture(scope="session")
def converted(clean, tmp_path_factory) -> tuple[Path, object]:
    """(output folder, ConvertResult) of `cellcheck convert clean/zarr --resolution 8`."""
    out = tmp_path_factory.mktemp("converted") / "out"
    result = convert(clean / "zarr", out, Options(EIGHT, DEFAULT_CLASS_MAP), jobs=1)
    return out, result
