"""Zarr reader (format v2 and v3): headers from metadata, voxels chunk by chunk.

CellMap stores are sparse: a chunk that was never written (an interrupted download, padding
around the imaged volume) holds the fill value. On a local store we ask whether each chunk's
key exists and hand over an unwritten chunk as a fill-only Block, without decompressing or
allocating it, so auditing a 6.5e9-voxel crop costs what its written chunks cost.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from cellcheck.readers.ome_ngff import Level, MetadataError, parse_levels
from cellcheck.readers.volume import DEFAULT_BLOCK_BYTES, Block, Header, ReadError, short_reason
from cellcheck.readers.zarr_compat import ZARR_ERRORS, chunk_exists_fn, is_array, open_node, storage_chunks


class ZarrVolume:
    """A zarr array (or a box of it) with physical geometry; axes in array order (z, y, x)."""

    def __init__(
        self,
        array: Any,
        path: Path,
        scale: tuple[float, ...] | None = None,
        translation: tuple[float, ...] | None = None,
        region: tuple[tuple[int, int], ...] | None = None,
    ) -> None:
        self.array = array
        ndim = len(array.shape)
        self.region = region or tuple((0, int(n)) for n in array.shape)
        scale = scale or (1.0,) * ndim
        translation = translation or (0.0,) * ndim
        origin = tuple(t + s * lo for t, s, (lo, _) in zip(translation, scale, self.region))
        self.header = Header(
            path=path,
            shape=tuple(hi - lo for lo, hi in self.region),
            dtype=np.dtype(array.dtype),
            spacing=tuple(scale),
            origin=origin,
        )

    @classmethod
    def open(cls, path: Path) -> "ZarrVolume":
        """Open an array, or the finest level of an OME-NGFF multiscale group."""
        node = open_node(path)
        if is_array(node):
            return cls(node, path)
        try:
            level = parse_levels(dict(node.attrs))[0]
            array = node[level.path]
        except (MetadataError, *ZARR_ERRORS) as exc:
            raise ReadError(path, f"not an OME-NGFF image ({short_reason(exc)}); point the datalist at an array or a multiscale group") from None
        return cls(array, path / level.path, level.scale, level.translation)

    @classmethod
    def level(cls, group: Any, group_path: Path, level: Level, region=None) -> "ZarrVolume":
        """One level of an already parsed multiscale group, optionally only a box of it."""
        return cls(open_level(group, group_path, level), group_path / level.path, level.scale, level.translation, region)

    def blocks(self, max_bytes: int = DEFAULT_BLOCK_BYTES) -> Iterator[Block]:
        """The region in boxes of whole storage chunks (as many as fit `max_bytes`), clipped to it.

        A box whose chunks all exist is read in one call (zarr decodes its chunks concurrently);
        in a box with unwritten chunks, each chunk is handed over alone, unwritten ones as fill.
        """
        arr = self.array
        chunk = storage_chunks(arr)
        exists = chunk_exists_fn(arr)
        fill = _py(arr.fill_value if arr.fill_value is not None else 0)
        ranges = [range(lo // c, -(-hi // c)) for (lo, hi), c in zip(self.region, chunk)]
        group = _group_sizes([len(r) for r in ranges], max(1, max_bytes // (int(np.prod(chunk)) * arr.dtype.itemsize)))
        outer = [range(r.start, r.stop, g) for r, g in zip(ranges, group)]
        for first in itertools.product(*outer):
            idxs = list(itertools.product(*(range(f, min(f + g, r.stop)) for f, g, r in zip(first, group, ranges))))
            if exists is None or all(exists(idx) for idx in idxs):
                last = tuple(min(f + g, r.stop) - 1 for f, g, r in zip(first, group, ranges))
                yield self._read(self._box(first, last, chunk), first)
                continue
            for idx in idxs:
                box = self._box(idx, idx, chunk)
                if exists(idx):
                    yield self._read(box, idx)
                else:
                    yield Block(start=self._start(box), shape=tuple(b - a for a, b in box), data=None, fill=fill)

    def read(self, max_bytes: int = DEFAULT_BLOCK_BYTES) -> np.ndarray:
        """The whole region as one array (unwritten chunks as the fill value); for boxes the caller sized."""
        out = np.empty(self.header.shape, dtype=self.header.dtype)
        for block in self.blocks(max_bytes):
            box = tuple(slice(s, s + n) for s, n in zip(block.start, block.shape))
            out[box] = block.fill if block.data is None else block.data
        return out

    def missing_chunks(self) -> int:
        """How many storage chunks under the region were never written (0 when the store cannot tell)."""
        exists = chunk_exists_fn(self.array)
        if exists is None:
            return 0
        chunk = storage_chunks(self.array)
        ranges = [range(lo // c, -(-hi // c)) for (lo, hi), c in zip(self.region, chunk)]
        return sum(1 for idx in itertools.product(*ranges) if not exists(idx))

    def _box(self, first, last, chunk) -> tuple[tuple[int, int], ...]:
        return tuple((max(lo, f * c), min(hi, (l + 1) * c)) for f, l, c, (lo, hi) in zip(first, last, chunk, self.region))

    def _start(self, box) -> tuple[int, ...]:
        return tuple(a - lo for (a, _), (lo, _) in zip(box, self.region))

    def _read(self, box, idx) -> Block:
        try:
            data = self.array[tuple(slice(a, b) for a, b in box)]
        except PermissionError as exc:
            raise ReadError(self.header.path, f"permission denied ({exc.strerror}); make it readable") from None
        except ZARR_ERRORS as exc:
            raise ReadError(self.header.path, f"corrupt chunk near {idx} ({short_reason(exc)}); re-download this store") from None
        return Block(start=self._start(box), shape=tuple(b - a for a, b in box), data=np.asarray(data))


def open_level(group: Any, group_path: Path, level: Level) -> Any:
    """The array of one level of a multiscale group; ReadError naming it when its metadata is broken."""
    try:
        return group[level.path]
    except ZARR_ERRORS as exc:
        raise ReadError(group_path / level.path, f"broken zarr metadata ({short_reason(exc)}); re-download this store") from None


def read_region(array: Any, path: Path, region: tuple[tuple[int, int], ...]) -> np.ndarray:
    """One box of an opened array, in one call (unwritten chunks read as the fill value): for small boxes read often.

    A box read many times (a training patch) pays zarr's per-call cost once, not once per chunk as
    `ZarrVolume.blocks` does to skip unwritten chunks of large regions.
    """
    try:
        return np.asarray(array[tuple(slice(a, b) for a, b in region)])
    except PermissionError as exc:
        raise ReadError(path, f"permission denied ({exc.strerror}); make it readable") from None
    except ZARR_ERRORS as exc:
        raise ReadError(path, f"corrupt chunk under {list(region)} ({short_reason(exc)}); re-download this store") from None


def _group_sizes(counts: list[int], budget: int) -> list[int]:
    """Chunks per box along each axis: fill the fastest axes first, at most `budget` chunks in all."""
    sizes = [1] * len(counts)
    for a in reversed(range(len(counts))):
        sizes[a] = max(1, min(counts[a], budget))
        budget //= sizes[a]
        if budget <= 1:
            break
    return sizes


def _py(value: Any) -> float | int:
    return value.item() if hasattr(value, "item") else value
