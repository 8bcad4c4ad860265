"""NIfTI reader: the header through nibabel, the voxels streamed in slabs along the slowest axis.

`.nii.gz` cannot seek, so the file is decompressed once, front to back; a slab is a run of
whole planes of the last axis (NIfTI stores voxels in Fortran order), so no byte is read twice
and memory stays at one slab whatever the volume's size.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Iterator

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError

from cellcheck.readers.volume import DEFAULT_BLOCK_BYTES, Block, Header, ReadError, short_reason

_READ_ERRORS = (OSError, EOFError, zlib.error, gzip.BadGzipFile, ImageFileError, ValueError)


class NiftiVolume:
    """A NIfTI-1/2 volume; array axes are NIfTI's (i, j, k), spacing from pixdim, origin from the affine."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            img = nib.load(str(path))
            hdr = img.header
            shape = tuple(int(s) for s in img.shape)
            proxy = img.dataobj  # the array proxy knows where voxels start and how they scale
            dtype = np.dtype(proxy.dtype)
            zooms = tuple(float(z) for z in hdr.get_zooms()[: len(shape)])
            affine = img.affine
            self._offset = int(proxy.offset)
            slope, inter = float(proxy.slope), float(proxy.inter)
        except PermissionError as exc:
            raise ReadError(path, f"permission denied ({exc.strerror}); make it readable") from None
        except _READ_ERRORS as exc:
            raise ReadError(path, f"not a readable NIfTI file ({short_reason(exc)}); re-download or re-convert it") from None
        self._scale = None if (slope, inter) == (1.0, 0.0) else (slope, inter)
        origin = tuple(float(v) for v in affine[:3, 3]) if affine is not None else (0.0,) * 3
        self.header = Header(path=path, shape=shape, dtype=dtype, spacing=zooms[:3], origin=origin,
                             direction=_direction(affine))

    def blocks(self, max_bytes: int = DEFAULT_BLOCK_BYTES) -> Iterator[Block]:
        """Slabs of whole last-axis planes, in file order. Raises ReadError on a truncated or corrupt file."""
        shape = _drop_trailing_ones(self.header.shape)
        dtype = self.header.dtype
        plane = int(np.prod(shape[:-1], dtype=np.int64)) if len(shape) > 1 else 1
        plane_bytes = plane * dtype.itemsize
        per_slab = max(1, max_bytes // max(plane_bytes, 1))
        gz = self.path.name.lower().endswith(".gz")
        try:
            with open(self.path, "rb") as raw:
                fh = _Inflated(raw) if gz else raw
                _skip(fh, self._offset)
                for k0 in range(0, shape[-1], per_slab):
                    k1 = min(shape[-1], k0 + per_slab)
                    buf = np.empty(plane * (k1 - k0), dtype=dtype)
                    got = _read_into(fh, buf.view(np.uint8))
                    if got < buf.nbytes:
                        raise ReadError(
                            self.path,
                            f"file is truncated: voxel data ends at plane {k0 + got // max(plane_bytes, 1)} "
                            f"of {shape[-1]}; re-download or re-convert it",
                        )
                    data = buf.reshape(shape[:-1] + (k1 - k0,), order="F")
                    if self._scale is not None:
                        data = data * np.float32(self._scale[0]) + np.float32(self._scale[1])
                    yield Block(start=(0,) * (len(shape) - 1) + (k0,), shape=data.shape, data=data)
        except ReadError:
            raise
        except PermissionError as exc:
            raise ReadError(self.path, f"permission denied ({exc.strerror}); make it readable") from None
        except _READ_ERRORS as exc:
            raise ReadError(self.path, f"corrupt or truncated ({short_reason(exc)}); re-download or re-convert it") from None


def _direction(affine: np.ndarray | None) -> tuple[tuple[float, ...], ...] | None:
    """Unit world vector of each of the first three array axes (the affine's columns, normalised)."""
    if affine is None:
        return None
    cols = np.asarray(affine, dtype=float)[:3, :3]
    norms = np.linalg.norm(cols, axis=0)
    if not np.all(np.isfinite(cols)) or (norms == 0).any():
        return None
    return tuple(tuple(round(float(v), 6) + 0.0 for v in cols[:, j] / norms[j]) for j in range(3))


class _Inflated:
    """A gzip stream read through zlib in large pieces: zlib checks the CRC itself and releases the GIL for
    the whole piece (the gzip module hands over 128 KiB at a time and checksums in Python's loop)."""

    _INPUT = 1 << 22  # compressed bytes per read

    def __init__(self, fh) -> None:
        self.fh = fh
        self.inflate = zlib.decompressobj(31)
        self.pending = memoryview(b"")

    def read(self, n: int) -> bytes:
        buf = bytearray(n)
        return bytes(buf[: self.readinto(memoryview(buf))])

    def readinto(self, out: memoryview) -> int:
        got = 0
        while got < len(out):
            if not self.pending:
                data = self._more(len(out) - got)
                if data is None:
                    break
                self.pending = memoryview(data)
            take = min(len(out) - got, len(self.pending))
            out[got : got + take] = self.pending[:take]
            self.pending = self.pending[take:]
            got += take
        return got

    def _more(self, want: int) -> bytes | None:
        """Up to `want` more decompressed bytes (at least one), or None where the data ends (the caller then
        says how far the voxels got: a truncated file)."""
        while True:
            if self.inflate.eof:  # another gzip member may follow (zero padding between members is allowed)
                rest = self.inflate.unused_data.lstrip(b"\0") or self.fh.read(self._INPUT).lstrip(b"\0")
                if not rest:
                    return None
                self.inflate, data = zlib.decompressobj(31), rest
            else:
                data = self.inflate.unconsumed_tail or self.fh.read(self._INPUT)
                if not data:
                    return None
            chunk = self.inflate.decompress(data, max(want, 1 << 16))
            if chunk:
                return chunk


def _drop_trailing_ones(shape: tuple[int, ...]) -> tuple[int, ...]:
    """(X, Y, Z, 1) is laid out like (X, Y, Z) in Fortran order; slab over the last real axis."""
    out = list(shape)
    while len(out) > 1 and out[-1] == 1:
        out.pop()
    return tuple(out)


def _skip(fh, nbytes: int) -> None:
    """Move past the header; reading, not seeking, so gzip streams never rewind."""
    while nbytes > 0:
        chunk = fh.read(min(nbytes, 1 << 20))
        if not chunk:
            return
        nbytes -= len(chunk)


def _read_into(fh, out: np.ndarray) -> int:
    """Fill `out` (uint8) from the stream without intermediate bytes objects; returns bytes read."""
    view, got = memoryview(out), 0
    while got < out.nbytes:
        n = fh.readinto(view[got:])
        if not n:
            break
        got += n
    return got
