"""The zarr reader streams every voxel once, hands unwritten chunks over as fill, reads v2 and v3.

Stores are written with the fixtures' own writer (the bytes zarr writes), so the same tests run
under zarr 2.18 (format 2 only, as beside the CellMap toolbox) and zarr 3.
"""

import numpy as np
import pytest

from cellcheck.scan import scan_volume
from cellcheck.readers.ome_ngff import Level
from cellcheck.readers.volume import ReadError
from cellcheck.readers.zarr_compat import ZARR_MAJOR, open_node
from cellcheck.readers.zarr_volume import ZarrVolume
from fixtures import ome

needs_v3 = pytest.mark.skipif(ZARR_MAJOR < 3, reason="zarr 2 reads format 2 stores only")


@pytest.mark.parametrize("fmt", [2, pytest.param(3, marks=needs_v3)])
def test_region_blocks_and_sparse_chunks(tmp_path, fmt):
    store = tmp_path / "s.zarr"
    data = np.random.default_rng(0).integers(1, 255, (16, 32, 16), dtype=np.uint8)
    ome.write_group(store, "", fmt)
    ome.write_array(store, "s0", fmt, (64, 64, 64), (16, 16, 16), [((16, 0, 32), data)])
    g = open_node(store)
    level = Level("s0", (8.0, 8.0, 8.0), (100.0, 0.0, 0.0))
    vol = ZarrVolume.level(g, store, level, region=((10, 40), (0, 40), (30, 50)))
    assert vol.header.shape == (30, 40, 20)
    assert vol.header.origin == (180.0, 0.0, 240.0)
    blocks = list(vol.blocks())
    assert sum(b.voxels for b in blocks) == 30 * 40 * 20
    written = [b for b in blocks if b.data is not None]
    assert sum(b.voxels for b in written) == 16 * 32 * 16  # only the two written chunks
    full = np.zeros(vol.header.shape, np.uint8)
    for b in written:
        full[tuple(slice(s, s + n) for s, n in zip(b.start, b.shape))] = b.data
    expected = np.zeros((64, 64, 64), np.uint8)
    expected[16:32, 0:32, 32:48] = data
    np.testing.assert_array_equal(full, expected[10:40, 0:40, 30:50])


@pytest.mark.parametrize("fmt", [2, pytest.param(3, marks=needs_v3)])
def test_scan_counts_fill_without_reading(tmp_path, fmt):
    store = tmp_path / "big.zarr"
    ome.write_group(store, "", fmt)
    ome.write_array(store, "s0", fmt, (1024, 1024, 1024), (128, 128, 128), [((0, 0, 0), np.full((2, 2, 2), 7, np.uint8))])
    scan = scan_volume(ZarrVolume.open(store / "s0"), planes=True)
    assert scan.voxels == 1024**3
    assert scan.counts == {0: 1024**3 - 8, 7: 8}
    assert scan.zero_plane_runs() == {0: 1022, 1: 1022, 2: 1022}


@pytest.mark.skipif(ZARR_MAJOR >= 3, reason="zarr 3 reads format 3")
def test_zarr2_names_a_format_3_store_and_the_fix(tmp_path):
    store = tmp_path / "v3.zarr"
    ome.write_group(store, "", 3)
    with pytest.raises(ReadError, match="format 3.*zarr>=3"):
        open_node(store)


def test_arrays_we_write_are_format_2_and_read_back(tmp_path):
    """What cellcheck writes (infer's probability maps) opens under zarr 2 and 3 alike, attributes included."""
    from cellcheck.readers.zarr_compat import create_array

    data = np.random.default_rng(1).random((2, 8, 6, 4), dtype=np.float32)
    arr = create_array(tmp_path / "p.zarr", data.shape, "float32", (1, 8, 6, 4), {"class_names": ["a", "b"]})
    arr[...] = data
    assert (tmp_path / "p.zarr" / ".zarray").is_file()
    again = open_node(tmp_path / "p.zarr")
    np.testing.assert_array_equal(again[...], data)
    assert again.attrs["class_names"] == ["a", "b"]
