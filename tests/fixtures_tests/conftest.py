"""Shared, session-scoped fixture datasets (each takes a few seconds to generate)."""

from __future__ import annotations

import pytest

from fixtures import make_dataset


def _make(tmp_path_factory, name, **kw):
    root = tmp_path_factory.mktemp(name) / "ds"
    return root, make_dataset(root, **kw)


@pytest.fixture(scope="session")
def ds_all(tmp_path_factory):
    """(root, expected) of the default dataset: seed 0, every defect planted."""
    return _make(tmp_path_factory, "all", seed=0, defects="all")


@pytest.fixture(scope="session")
def ds_all_again(tmp_path_factory):
    return _make(tmp_path_factory, "all2", seed=0, defects="all")


@pytest.fixture(scope="session")
def ds_none(tmp_path_factory):
    return _make(tmp_path_factory, "none", seed=0, defects="none")
