"""read_volume: a whole volume through the audit's readers, with its affine; size-1 axes dropped."""

import nibabel as nib
import numpy as np
import pytest
from cellcheck.readers.arrays import read_volume
from cellcheck.readers.volume import ReadError
from cellcheck.readers.zarr_compat import ZARR_MAJOR
from fixtures import ome


def test_nifti_voxels_dtype_and_affine(tmp_path):
    data = np.random.default_rng(0).integers(-300, 300, (9, 7, 5), dtype=np.int16)
    affine = np.array([[0, 0, 8.0, 100.0], [0, 8.0, 0, -20.0], [-8.0, 0, 0, 5.5], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(data[..., None], affine), str(tmp_path / "c.nii.gz"))  # (X, Y, Z, 1)
    volume = read_volume(tmp_path / "c.nii.gz", max_bytes=7 * 9 * 2)  # several slabs
    assert volume.data.dtype == np.int16 and np.array_equal(volume.data, data)
    np.testing.assert_allclose(volume.affine, affine)


@pytest.mark.parametrize("fmt", [2, pytest.param(3, marks=pytest.mark.skipif(ZARR_MAJOR < 3, reason="zarr 2"))])
def test_ome_ngff_group_finest_level_with_unwritten_chunks(tmp_path, fmt):
    """Written with the fixtures' writer (the bytes zarr writes), so zarr 2 and 3 both run it."""
    store = tmp_path / "em.zarr"
    levels = [("s1", [16.0] * 3, [4.0, 0.0, 0.0]), ("s0", [8.0] * 3, [0.0, 0.0, 0.0])]  # not finest first
    ome.write_group(store, "", fmt, ome.multiscale_attrs(fmt, "em", levels))
    ome.write_array(store, "s0", fmt, (20, 16, 12), (8, 8, 8), [((0, 0, 0), np.full((8, 8, 8), 200, np.uint8))],
                    fill_value=3)
    ome.write_array(store, "s1", fmt, (10, 8, 6), (8, 8, 8))
    volume = read_volume(tmp_path / "em.zarr")
    expected = np.full((20, 16, 12), 3, np.uint8)
    expected[:8, :8, :8] = 200
    assert np.array_equal(volume.data, expected)  # the finest level, unwritten chunks as their fill value
    np.testing.assert_allclose(volume.affine, np.diag([8.0, 8.0, 8.0, 1.0]))


def test_errors_name_the_file(tmp_path):
    with pytest.raises(ReadError, match="does not exist"):
        read_volume(tmp_path / "nope.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.uint8), np.eye(4)), str(tmp_path / "two.nii.gz"))
    with pytest.raises(ReadError, match=r"two.nii.gz.*not one 3D volume"):
        read_volume(tmp_path / "two.nii.gz")
