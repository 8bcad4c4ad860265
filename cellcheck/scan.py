"""One streaming pass over a volume: everything the voxel checks and the statistics need.

The pass keeps O(1) state per volume (a 256-bin histogram, value counts of a label, which
planes along each axis hold any non-zero voxel), so memory is one block whatever the size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from cellcheck.boundaries import BoundaryStats, PairSteps
from cellcheck.readers.prefetch import read_ahead
from cellcheck.readers.volume import DEFAULT_BLOCK_BYTES, Block, Volume

#: Integer volumes whose value range fits this many bins are counted exactly with bincount.
_MAX_BINS = 1 << 16

#: np.bincount converts its input to int64: feed it pieces of this many elements so the
#: temporary stays at 8 MiB instead of 8 bytes per voxel of the block.
_BINCOUNT_PIECE = 1 << 20


def _bincount(flat: np.ndarray, minlength: int) -> np.ndarray:
    """np.bincount of a 1-D non-negative integer array, in bounded-memory pieces."""
    out = np.zeros(minlength, dtype=np.int64)
    for i in range(0, flat.size, _BINCOUNT_PIECE):
        counts = np.bincount(flat[i : i + _BINCOUNT_PIECE], minlength=minlength)
        out[: counts.size] += counts[:minlength] if counts.size > minlength else counts
    return out


@dataclass
class VolumeScan:
    """Summary of every voxel of a volume (one pass).

    `counts` maps each value to its voxel count for integer volumes (exact);
    `nonzero_planes[a][i]` tells whether plane i along axis a holds any non-zero voxel.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    voxels: int = 0
    minimum: float = float("inf")
    maximum: float = float("-inf")
    total: float = 0.0
    total_sq: float = 0.0
    counts: dict[int, int] | None = None
    nonintegral: bool = False
    nonzero_planes: list[np.ndarray] = field(default_factory=list)
    nan: int = 0  # float volumes: NaN voxels (left out of the moments and the range)
    inf: int = 0  # float volumes: +-Inf voxels (left out likewise)

    @property
    def finite(self) -> int:
        """Voxels the moments are over (all but NaN and Inf)."""
        return self.voxels - self.nan - self.inf

    @property
    def mean(self) -> float:
        return self.total / self.finite if self.finite else float("nan")

    @property
    def std(self) -> float:
        if not self.finite:
            return float("nan")
        return float(np.sqrt(max(self.total_sq / self.finite - self.mean**2, 0.0)))

    def zero_plane_runs(self) -> dict[int, int]:
        """Number of all-zero planes along each axis that has some (only meaningful if not blank)."""
        return {a: int((~nz).sum()) for a, nz in enumerate(self.nonzero_planes) if (~nz).any()}


def scan_volume(volume: Volume, *, planes: bool = False, max_bytes: int = DEFAULT_BLOCK_BYTES) -> VolumeScan:
    """Read every voxel once. `planes=True` also records all-zero planes (for partial-blank images)."""
    hdr = volume.header
    integer = np.issubdtype(hdr.dtype, np.integer) or hdr.dtype == np.bool_
    out = VolumeScan(shape=hdr.shape, dtype=hdr.dtype, counts={} if integer else None)
    if planes:
        out.nonzero_planes = [np.zeros(n, dtype=bool) for n in hdr.shape]
    hist = np.zeros(_MAX_BINS, dtype=np.int64) if integer else None
    for block in volume.blocks(max_bytes):
        if block.data is None:
            _add_fill(out, block.fill, block.voxels, hist)
            if planes and block.fill != 0:
                _mark_nonzero(out, block.start, block.shape, None)
            continue
        data = block.data
        if data.size == 0:
            continue
        out.voxels += data.size
        zeros = _count_integers(out, data, hist) if integer else _add_float(out, data)
        if planes:
            # Plane bookkeeping costs a pass only where a block holds zeros (rare in real EM).
            _mark_nonzero(out, block.start, data.shape, data if zeros else None)
    if integer:
        _finish_counts(out, hist)
    return out


def _mark_nonzero(out: VolumeScan, start: tuple[int, ...], shape: tuple[int, ...], data: np.ndarray | None) -> None:
    """Record which planes of this box hold a non-zero voxel (all of them when `data` is None)."""
    nz = None if data is None else data != 0
    for a, (s, n) in enumerate(zip(start, shape)):
        if nz is None:
            out.nonzero_planes[a][s : s + n] = True
        else:
            out.nonzero_planes[a][s : s + n] |= nz.any(axis=tuple(i for i in range(nz.ndim) if i != a))


def byte_histogram(flat: np.ndarray) -> np.ndarray:
    """Exact 256-bin histogram of a 1-D uint8 array.

    Counting byte pairs as uint16 (65536 bins) and folding halves the number of bincount
    elements, about 1.6x faster than a plain bincount of the bytes.
    """
    even = flat.size - (flat.size & 1)
    pairs = _bincount(flat[:even].view(np.uint16), 1 << 16).reshape(256, 256)
    # little- or big-endian, each uint16 holds one byte in each half
    hist = pairs.sum(axis=0) + pairs.sum(axis=1)
    if even != flat.size:
        hist[flat[-1]] += 1
    return hist


def _count_integers(out: VolumeScan, data: np.ndarray, hist: np.ndarray) -> int:
    """Exact value counts (bincount when values fit the histogram, np.unique otherwise); returns #zeros."""
    flat = data.ravel(order="K")  # a view in whatever order the reader produced (NIfTI is Fortran)
    if data.dtype.itemsize == 1 and data.dtype.kind in "ub":
        h = byte_histogram(flat.view(np.uint8))
        hist[:256] += h
        return int(h[0])
    lo, hi = int(flat.min()), int(flat.max())
    if lo >= 0 and hi < _MAX_BINS:
        h = _bincount(flat, hi + 1)
        hist[: hi + 1] += h
        return int(h[0])
    values, counts = np.unique(flat, return_counts=True)
    for v, c in zip(values.tolist(), counts.tolist()):
        out.counts[int(v)] = out.counts.get(int(v), 0) + int(c)
    return int(counts[values == 0].sum())


def _finish_counts(out: VolumeScan, hist: np.ndarray) -> None:
    for v in np.flatnonzero(hist).tolist():
        out.counts[v] = out.counts.get(v, 0) + int(hist[v])
    if out.counts:
        keys = np.fromiter(out.counts.keys(), dtype=np.float64)
        vals = np.fromiter(out.counts.values(), dtype=np.float64)
        out.minimum, out.maximum = float(keys.min()), float(keys.max())
        out.total = float((keys * vals).sum())
        out.total_sq = float((keys * keys * vals).sum())


def _add_fill(out: VolumeScan, fill: float | int, n: int, hist: np.ndarray | None) -> None:
    out.voxels += n
    if out.counts is not None:
        if 0 <= int(fill) < _MAX_BINS:
            hist[int(fill)] += n
        else:
            out.counts[int(fill)] = out.counts.get(int(fill), 0) + n
        return
    out.minimum, out.maximum = min(out.minimum, float(fill)), max(out.maximum, float(fill))
    out.total += float(fill) * n
    out.total_sq += float(fill) ** 2 * n


def _add_float(out: VolumeScan, data: np.ndarray) -> int:
    """Streaming moments of a float block over its finite voxels (NaN and Inf counted apart); returns #zeros."""
    d = data.ravel(order="K").astype(np.float64, copy=False)
    finite = np.isfinite(d)
    if not finite.all():
        nan = int(np.count_nonzero(np.isnan(d)))
        out.nan += nan
        out.inf += int(d.size - np.count_nonzero(finite)) - nan
        out.nonintegral = True
        d = d[finite]
        if not d.size:
            return 0
    out.minimum = min(out.minimum, float(d.min()))
    out.maximum = max(out.maximum, float(d.max()))
    out.total += float(d.sum())
    out.total_sq += float(np.dot(d, d))
    if not out.nonintegral:
        out.nonintegral = bool(np.any(d != np.round(d)))
    return int(d.size - np.count_nonzero(d))


@dataclass
class PairScan:
    """An image and its label read in one lockstep pass.

    `joint[v, i]` counts voxels with label value v and image intensity i (uint8 pairs only):
    label counts, the image histogram and per-label intensity histograms all come from it.
    """

    image: VolumeScan
    label: VolumeScan
    joint: np.ndarray | None = None
    boundaries: PairSteps | None = None  # intensity steps across label boundaries (uint8 pairs read together)


class _Misaligned(Exception):
    pass


def scan_pair(image: Volume, label: Volume, *, max_bytes: int = DEFAULT_BLOCK_BYTES, boundaries: bool = False) -> PairScan:
    """One pass over a uint8 image and uint8 label together when their blocks align; two passes otherwise.

    `boundaries`: also collect the intensity steps across label boundaries (joint pass only).
    """
    if image.header.dtype == np.uint8 and label.header.dtype == np.uint8:
        try:
            return _joint_scan(image, label, max_bytes // 2, boundaries)
        except _Misaligned:
            pass
    return PairScan(scan_volume(image, planes=True, max_bytes=max_bytes), scan_volume(label, max_bytes=max_bytes))


#: Volumes smaller than this are read in the caller's thread: a thread costs more than it overlaps.
_READ_AHEAD_BYTES = 1 << 20
#: Blocks read ahead are at most this large: several per volume, so reading and counting overlap.
_AHEAD_BLOCK_BYTES = 1 << 20


def _blocks(volume: Volume, max_bytes: int) -> Iterator[Block]:
    """A volume's blocks, read ahead in a thread when it is large enough (decompression overlaps counting).

    Read ahead, a block is at most a third of `max_bytes`: the one counted, the one queued, the one being read.
    """
    if volume.header.voxels * volume.header.dtype.itemsize <= _READ_AHEAD_BYTES:
        return volume.blocks(max_bytes)
    return read_ahead(volume.blocks(max(min(max_bytes // 3, _AHEAD_BLOCK_BYTES), 1)), depth=1)


def _joint_scan(image: Volume, label: Volume, max_bytes: int, boundaries: bool = False) -> PairScan:
    ih, lh = image.header, label.header
    steps = BoundaryStats.for_volume(ih.voxels) if boundaries else None
    img = VolumeScan(shape=ih.shape, dtype=ih.dtype, counts={}, nonzero_planes=[np.zeros(n, dtype=bool) for n in ih.shape])
    lab = VolumeScan(shape=lh.shape, dtype=lh.dtype, counts={})
    joint = np.zeros((256, 256), dtype=np.int64)
    for ib, lb in zip(_blocks(image, max_bytes), _blocks(label, max_bytes), strict=False):
        if ib.shape[:3] != lb.shape[:3] or ib.start[:3] != lb.start[:3]:
            raise _Misaligned
        n = ib.voxels
        if ib.data is None and lb.data is None:
            joint[int(lb.fill), int(ib.fill)] += n
        elif lb.data is None:
            joint[int(lb.fill)] += byte_histogram(ib.data.ravel(order="K"))
        elif ib.data is None:
            joint[:, int(ib.fill)] += byte_histogram(lb.data.ravel(order="K"))
        else:
            # label in the high byte, intensity in the low byte: one bincount for both volumes
            lab_flat, img_flat = lb.data.ravel(order="K"), ib.data.ravel(order="K")
            key = np.empty(min(lab_flat.size, _BINCOUNT_PIECE), dtype=np.uint16)
            flat_joint = joint.reshape(-1)
            for i in range(0, lab_flat.size, _BINCOUNT_PIECE):
                k = key[: min(_BINCOUNT_PIECE, lab_flat.size - i)]
                np.left_shift(lab_flat[i : i + k.size], 8, out=k, dtype=np.uint16)
                k |= img_flat[i : i + k.size]
                counts = np.bincount(k)  # as long as the largest key: a label's few values, not all 256 rows
                flat_joint[: counts.size] += counts
            if steps is not None:
                steps.add(ib.data, lb.data, ib.start)
        zeros_here = ib.data is not None and not np.all(ib.data.ravel(order="K"))
        if ib.data is None:
            if ib.fill != 0:
                _mark_nonzero(img, ib.start, ib.shape, None)
        else:
            _mark_nonzero(img, ib.start, ib.shape, ib.data if zeros_here else None)
    if joint.sum() != ih.voxels or ih.voxels != lh.voxels:
        raise _Misaligned
    for scan, hist in ((img, joint.sum(axis=0)), (lab, joint.sum(axis=1))):
        scan.voxels = int(hist.sum())
        _finish_counts(scan, hist)
    return PairScan(img, lab, joint, steps.compact() if steps is not None else None)
