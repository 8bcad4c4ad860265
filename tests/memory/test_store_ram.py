"""The store loader's RAM model against the loader measured under `cellcheck profile` (run alone: PSS sharing)."""

from __future__ import annotations

import argparse

import pytest

from store_loader import compare_model, fixture_stores

pytestmark = pytest.mark.alone


def test_the_store_model_holds_a_measured_run_within_15_percent(tmp_path):
    stores = fixture_stores(tmp_path, 48)
    args = argparse.Namespace(resolution=8.0, patch=32, batches=16, prefetch=2)
    row = compare_model(stores, args, workers=2)
    assert row["predicted_bytes"] >= row["measured_bytes"], row  # the worst case is never below a real run
    assert row["ratio"] <= 1.15, row


def test_peak_memory_stays_flat_when_crops_grow(tmp_path):
    """Crops of 4x the voxels: the loader holds patches and chunks, never crops, so its peak does not move."""
    from store_loader import profiled

    args = argparse.Namespace(resolution=8.0, patch=32, batches=12, prefetch=2)
    small = profiled(fixture_stores(tmp_path, 48), args, 2)["peak_footprint_mb"]
    large = profiled(fixture_stores(tmp_path, 76), args, 2)["peak_footprint_mb"]
    assert large <= 1.10 * small, (small, large)
