"""The zarr reader streams every voxel once, hands unwritten chunks over as fill, reads v2 and v3."""

import numpy as np
import pytest
import zarr

from cellcheck.scan import scan_volume
from cellcheck.sources.ome_ngff import Level
from cellcheck.sources.zarr_volume import ZarrVolume


@pytest.mark.parametrize("fmt", [2, 3])
def test_region_blocks_and_sparse_chunks(tmp_path, fmt):
    g = zarr.open_group(tmp_path / "s.zarr", mode="w", zarr_format=fmt)
    a = g.create_array("s0", shape=(64, 64, 64), chunks=(16, 16, 16), dtype="uint8", fill_value=0)
    data = np.random.default_rng(0).integers(1, 255, (16, 32, 16), dtype=np.uint8)
    a[16:32, 0:32, 32:48] = data
    level = Level("s0", (8.0, 8.0, 8.0), (100.0, 0.0, 0.0))
    vol = ZarrVolume.level(g, tmp_path / "s.zarr", level, region=((10, 40), (0, 40), (30, 50)))
    assert vol.header.shape == (30, 40, 20)
    assert vol.header.origin == (180.0, 0.0, 240.0)
    blocks = list(vol.blocks())
    assert sum(b.voxels for b in blocks) == 30 * 40 * 20
    written = [b for b in blocks if b.data is not None]
    assert sum(b.voxels for b in written) == 16 * 32 * 16  # only the two written chunks
    full = np.zeros(vol.header.shape, np.uint8)
    for b in written:
        full[tuple(slice(s, s + n) for s, n in zip(b.start, b.shape))] = b.data
    np.testing.assert_array_equal(full, np.asarray(a[10:40, 0:40, 30:50]))


def test_scan_counts_fill_without_reading(tmp_path):
    g = zarr.open_group(tmp_path / "big.zarr", mode="w", zarr_format=3)
    a = g.create_array("s0", shape=(1024, 1024, 1024), chunks=(128, 128, 128), dtype="uint8", fill_value=0)
    a[:2, :2, :2] = 7
    scan = scan_volume(ZarrVolume(a, tmp_path / "big.zarr/s0"), planes=True)
    assert scan.voxels == 1024**3
    assert scan.counts == {0: 1024**3 - 8, 7: 8}
    assert scan.zero_plane_runs() == {0: 1022, 1: 1022, 2: 1022}
