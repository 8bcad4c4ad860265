"""Reading ahead in a thread: the same blocks in the same order, a reader's error raised where it happened,
a caller that stops early stops the reader, and a scan that reads ahead gives the same result."""

import threading

import numpy as np
import pytest

from cellcheck.readers import open_volume
from cellcheck.readers.prefetch import read_ahead
from cellcheck.readers.volume import ReadError
from cellcheck.scan import scan_pair
from datasets import read_datalist


def test_same_items_in_order():
    assert list(read_ahead(iter(range(50)), depth=1)) == list(range(50))


def test_an_error_reaches_the_caller_after_the_items_before_it(tmp_path):
    def blocks():
        yield 1
        yield 2
        raise ReadError(tmp_path / "x.nii.gz", "file is truncated")

    got = []
    with pytest.raises(ReadError, match="truncated"):
        for item in read_ahead(blocks()):
            got.append(item)
    assert got == [1, 2]


def test_stopping_early_stops_the_reader():
    produced = []

    def blocks():
        for i in range(10_000):
            produced.append(i)
            yield i

    before = threading.active_count()
    it = read_ahead(blocks(), depth=1)
    assert next(it) == 0
    it.close()
    assert threading.active_count() == before and len(produced) < 10


def test_a_scan_reading_ahead_equals_one_reading_in_place(clean, monkeypatch):
    import cellcheck.scan as scan

    e = read_datalist(clean)["training"][0]
    pair = lambda: scan_pair(open_volume(clean / e["image"]), open_volume(clean / e["label"]), boundaries=True)  # noqa: E731
    monkeypatch.setattr(scan, "_READ_AHEAD_BYTES", 0)  # every volume read ahead, in blocks of at most 4 KiB
    monkeypatch.setattr(scan, "_AHEAD_BLOCK_BYTES", 4096)
    ahead = pair()
    monkeypatch.setattr(scan, "_READ_AHEAD_BYTES", 1 << 40)
    inline = pair()
    assert np.array_equal(ahead.joint, inline.joint) and ahead.image.counts == inline.image.counts
    assert ahead.boundaries.keys.tolist() == inline.boundaries.keys.tolist()
    assert ahead.boundaries.count.tolist() == inline.boundaries.count.tolist()
