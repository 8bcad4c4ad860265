"""A whole volume as one numpy array, read through the same readers as the audit (`open_volume`).

The trainer (training and validation crops) and inference need every voxel of a crop at once;
reading them through `open_volume(...).blocks()` keeps one reader for audit, training and
inference: the same NIfTI scaling, the same OME-NGFF level choice, the same errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cellcheck.readers.open import open_volume
from cellcheck.readers.volume import DEFAULT_BLOCK_BYTES, Header, ReadError

__all__ = ["VolumeArray", "read_volume"]


@dataclass(frozen=True)
class VolumeArray:
    """Voxels of a 3D volume in array axis order (NIfTI i, j, k; zarr z, y, x), with where they sit.

    `data` has the stored dtype (float32 for a NIfTI with a scale slope); `affine` maps voxel
    indices to the file's world coordinates (NIfTI's own affine; diag(spacing) + origin for zarr).
    """

    data: np.ndarray
    header: Header
    affine: np.ndarray


def read_volume(path: Path | str, max_bytes: int = DEFAULT_BLOCK_BYTES) -> VolumeArray:
    """Every voxel of the 3D volume at `path` (NIfTI, zarr array or OME-NGFF group: its finest level).

    Size-1 axes around the three spatial ones ((X, Y, Z, 1) NIfTI, (1, Z, Y, X) zarr) are dropped.
    Raises ReadError (path and reason in one line) when the file cannot be read or is not 3D.
    """
    path = Path(path)
    if not path.exists():
        raise ReadError(path, "does not exist; check the path")
    volume = open_volume(path)
    header = volume.header
    data: np.ndarray | None = None
    for block in volume.blocks(max_bytes):
        if data is None:
            shape = tuple(int(s) for s in header.shape[: len(block.start)])
            dtype = block.data.dtype if block.data is not None else header.dtype
            data = np.empty(shape, dtype=dtype)
        box = tuple(slice(s, s + n) for s, n in zip(block.start, block.shape))
        data[box] = block.fill if block.data is None else block.data.reshape(block.shape)
    if data is None:
        data = np.zeros(header.shape, dtype=header.dtype)
    data = _squeeze_to_3d(data, path)
    return VolumeArray(data=data, header=header, affine=_affine(path, header))


def _squeeze_to_3d(data: np.ndarray, path: Path) -> np.ndarray:
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    while data.ndim > 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 3:
        raise ReadError(path, f"has shape {data.shape}, not one 3D volume; convert it to a single-channel 3D image")
    return data


def _affine(path: Path, header: Header) -> np.ndarray:
    """The NIfTI header's affine (header only, no voxels), or diag(spacing) + origin for zarr."""
    if path.name.lower().endswith((".nii", ".nii.gz")):
        import nibabel as nib

        return np.asarray(nib.load(str(path)).affine, dtype=np.float64)
    affine = np.eye(4)
    spacing, origin = header.spacing[-3:], header.origin[-3:]
    if len(spacing) == 3:
        affine[:3, :3] = np.diag(spacing)
    if len(origin) == 3:
        affine[:3, 3] = origin
    return affine
