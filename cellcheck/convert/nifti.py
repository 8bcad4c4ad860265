"""A gzip'd NIfTI-1 file written slab by slab, so a converted crop is never whole in memory.

NIfTI stores voxels in Fortran order: the last array axis is the slowest, so consecutive slabs of
whole last-axis planes are consecutive bytes of the file. The header says uint8 and the affine
(voxel size and the centre of voxel 0, nm); nibabel reads the file back like one it wrote itself.
Output is deterministic (gzip mtime 0, no file name in the gzip header) and hashed as it is written.
"""

from __future__ import annotations

import gzip
import hashlib
from typing import BinaryIO

import nibabel as nib
import numpy as np

#: gzip level: nibabel's own default for .nii.gz (fast; the field's 31-minute conversion was not gzip-bound).
COMPRESS_LEVEL = 1
_HEADER_BYTES = 352  # 348-byte NIfTI-1 header + 4 bytes of "no extensions"


def affine(spacing, origin) -> np.ndarray:
    """diag(spacing) with `origin` as translation: array axes (z, y, x) map to world (nm) one to one."""
    a = np.diag([float(s) for s in spacing] + [1.0])
    a[:3, 3] = [float(o) for o in origin]
    return a


def header_bytes(shape: tuple[int, ...], dtype: np.dtype, aff: np.ndarray) -> bytes:
    """The 352 bytes that precede the voxels of a single-file NIfTI-1 image."""
    img = nib.Nifti1Image(np.zeros((1,) * len(shape), dtype=dtype), aff)
    img.update_header()
    hdr = img.header.copy()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(dtype)
    hdr.set_qform(aff, code="aligned")
    hdr.set_sform(aff, code="aligned")
    hdr["vox_offset"] = _HEADER_BYTES
    return hdr.binaryblock + b"\x00" * (_HEADER_BYTES - len(hdr.binaryblock))


class _Hashing:
    """A write-only file that hashes what goes through it (the compressed bytes, as on disk)."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh, self.sha = fh, hashlib.sha256()

    def write(self, data) -> int:
        self.sha.update(data)
        return self.fh.write(data)

    def flush(self) -> None:
        self.fh.flush()


class NiftiStream:
    """Write a .nii.gz into an open binary file from slabs along the last axis, in order; `close` returns its sha256."""

    def __init__(self, fh: BinaryIO, shape: tuple[int, ...], dtype: np.dtype, aff: np.ndarray) -> None:
        self.shape, self.dtype, self.written = tuple(shape), np.dtype(dtype), 0
        self._out = _Hashing(fh)
        self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=self._out, compresslevel=COMPRESS_LEVEL, mtime=0)
        self._gz.write(header_bytes(self.shape, self.dtype, aff))

    def write(self, slab: np.ndarray) -> None:
        if slab.shape[:-1] != self.shape[:-1] or self.written + slab.shape[-1] > self.shape[-1]:
            raise ValueError(f"slab of shape {slab.shape} at plane {self.written} of a volume of shape {self.shape}")
        self._gz.write(np.asarray(slab, dtype=self.dtype).tobytes(order="F"))
        self.written += slab.shape[-1]

    def close(self) -> str:
        if self.written != self.shape[-1]:
            raise ValueError(f"slabs covered {self.written} of {self.shape[-1]} planes")
        self._gz.close()
        return self._out.sha.hexdigest()
