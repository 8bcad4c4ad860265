"""The streaming NIfTI reader returns exactly what nibabel returns, slab by slab, and fails cleanly."""

import gzip

import nibabel as nib
import numpy as np
import pytest

from cellcheck.readers.nifti import NiftiVolume
from cellcheck.readers.volume import ReadError


def assemble(volume, max_bytes):
    out = np.zeros(volume.header.shape, dtype=volume.header.dtype)
    for b in volume.blocks(max_bytes):
        out[tuple(slice(s, s + n) for s, n in zip(b.start, b.shape))] = b.data.reshape(b.shape)
    return out


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_blocks_equal_nibabel(tmp_path, suffix, dtype):
    rng = np.random.default_rng(1)
    data = (rng.random((13, 17, 11)) * 100).astype(dtype)
    affine = np.diag([8.0, 4.0, 2.0, 1.0])
    affine[:3, 3] = [16, 32, 48]
    path = tmp_path / f"v{suffix}"
    nib.save(nib.Nifti1Image(data, affine), path)
    vol = NiftiVolume(path)
    assert vol.header.shape == (13, 17, 11)
    assert vol.header.spacing == (8.0, 4.0, 2.0)
    assert vol.header.origin == (16.0, 32.0, 48.0)
    # a budget of three planes forces several slabs
    got = assemble(vol, max_bytes=3 * 13 * 17 * np.dtype(dtype).itemsize)
    np.testing.assert_array_equal(got, np.asanyarray(nib.load(path).dataobj))


def test_trailing_singleton_axis(tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.uint8).reshape(4, 5, 6, 1)
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    vol = NiftiVolume(path)
    got = np.concatenate([b.data for b in vol.blocks(max_bytes=40)], axis=2)
    np.testing.assert_array_equal(got, data[..., 0])


def test_scaled_data_applies_slope(tmp_path):
    img = nib.Nifti1Image(np.full((4, 4, 4), 3, dtype=np.int16), np.eye(4))
    img.header.set_slope_inter(2.0, 1.0)
    path = tmp_path / "s.nii.gz"
    nib.save(img, path)
    blocks = list(NiftiVolume(path).blocks())
    assert float(blocks[0].data.max()) == 7.0


def test_truncated_gzip_is_a_read_error(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "t.nii.gz"
    nib.save(nib.Nifti1Image(rng.integers(0, 255, (40, 40, 40), dtype=np.uint8), np.eye(4)), path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    vol = NiftiVolume(path)  # the header is intact: opening works, reading the voxels fails
    with pytest.raises(ReadError, match="truncated|corrupt"):
        for _ in vol.blocks():
            pass


def test_short_uncompressed_file_is_a_read_error(tmp_path):
    path = tmp_path / "t.nii"
    nib.save(nib.Nifti1Image(np.ones((10, 10, 10), dtype=np.uint8), np.eye(4)), path)
    path.write_bytes(path.read_bytes()[:-150])
    with pytest.raises(ReadError, match="truncated"):
        list(NiftiVolume(path).blocks())


def test_not_nifti_is_a_read_error(tmp_path):
    path = tmp_path / "x.nii.gz"
    path.write_bytes(gzip.compress(b"not a nifti header at all"))
    with pytest.raises(ReadError, match="re-download or re-convert"):
        NiftiVolume(path)
