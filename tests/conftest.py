"""Shared datasets, written once per session by the fixture generator (no binary fixtures in git); torch's threads."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellcheck.classes import DEFAULT_CLASS_MAP
from cellcheck.convert import Options, convert
from datasets import V3
from fixtures import make_dataset

EIGHT = (8.0, 8.0, 8.0)


@pytest.fixture(scope="session")
def defects_all(tmp_path_factory) -> Path:
    """A dataset with every defect planted (seed 0); its expected.json says what must be found."""
    root = tmp_path_factory.mktemp("all") / "data"
    make_dataset(root, seed=0, defects="all", v3=V3)
    return root


@pytest.fixture(scope="session")
def clean(tmp_path_factory) -> Path:
    """A dataset with no defect at all."""
    root = tmp_path_factory.mktemp("clean") / "data"
    make_dataset(root, seed=1, defects="none", v3=V3)
    return root


@pytest.fixture
def clean_copy(clean, tmp_path) -> Path:
    """A private copy of the clean dataset that a test may damage."""
    dst = tmp_path / "data"
    shutil.copytree(clean, dst)
    return dst


@pytest.fixture(scope="session")
def converted(clean, tmp_path_factory) -> tuple[Path, object]:
    """(output folder, ConvertResult) of `cellcheck convert clean/zarr --resolution 8`."""
    out = tmp_path_factory.mktemp("converted") / "out"
    result = convert(clean / "zarr", out, Options(EIGHT, DEFAULT_CLASS_MAP), jobs=1)
    return out, result


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on a shared 2-core box, OpenMP barriers under contention cost 5-10x (measured)."""
    import torch  # here: the tests that need no torch do not wait for its import

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
