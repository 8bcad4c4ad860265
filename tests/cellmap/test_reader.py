"""The store reader against `cellcheck convert`: the same crops at the same resolution hold the same voxels.

For every crop convert converted at 8 nm, the reader's image and per-class targets over the crop's box
and over boxes inside it equal the converted image and label wherever convert keeps the class, and the
known mask marks unknown exactly as many voxels as convert's provenance counts unknown for each class.
Outside the crop the image is the raw around it and every class is unknown. Runs under zarr 2 and 3
(scripts/test.sh runs tests/cellmap again in a zarr-2 environment; zarr 2 cannot open the v3 store,
which convert then refuses, so it is compared under zarr 3 only).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from cellcheck.cellmap.plan import PlanOptions, plan_crop
from cellcheck.cellmap.reader import CropReader
from cellcheck.cellmap.stores import open_store
from cellcheck.classes import DEFAULT_CLASS_MAP
from cellcheck.readers.arrays import read_volume

EIGHT = (8.0, 8.0, 8.0)


def _cases(out):
    for record in sorted((out / "provenance").glob("*.json")):
        yield json.loads(record.read_text())


def _reader(record) -> tuple[CropReader, tuple]:
    from pathlib import Path

    store = open_store(Path(record["store"]))
    crop = store.open_crop(record["crop"], only=DEFAULT_CLASS_MAP.names)
    plan = plan_crop(record["case"], store, crop, PlanOptions(EIGHT, DEFAULT_CLASS_MAP))
    return CropReader(plan, store, crop, DEFAULT_CLASS_MAP), plan


def _unknown_counts(record) -> dict[str, int]:
    """Voxels convert counted unknown per class: its provenance's `dropped` says how many (0 for a kept class)."""
    out = {}
    for name, why in record["dropped"].items():
        m = re.match(r"(\d+) of (\d+) voxels unknown", why)
        out[name] = int(m.group(1)) if m else None  # None: "entirely unknown"
    return out


def test_every_converted_crop_reads_the_same(converted):
    out, result = converted
    records = list(_cases(out))
    assert len(records) >= 8  # the clean fixture converts ten crops at 8 nm (the v3 store under zarr 3 only)
    for record in records:
        reader, plan = _reader(record)
        image = read_volume(out / record["image"]["path"]).data
        label = read_volume(out / record["label"]["path"]).data
        lo, hi = reader.labelled
        assert tuple(b - a for a, b in zip(lo, hi)) == image.shape
        box = reader.read(lo, hi)
        present, known = box.unpacked(len(DEFAULT_CLASS_MAP))
        np.testing.assert_array_equal(box.image, image, err_msg=record["case"])
        for channel, name in enumerate(DEFAULT_CLASS_MAP.names):
            if name in record["annotated"]:
                np.testing.assert_array_equal(present[channel], label == channel + 1, err_msg=f"{record['case']} {name}")
                assert known[channel].all(), (record["case"], name)
            elif name not in plan.classes:
                assert not known[channel].any() and not present[channel].any(), (record["case"], name)
        for name, unknown in _unknown_counts(record).items():
            channel = DEFAULT_CLASS_MAP.names.index(name)
            counted = int((~known[channel]).sum())
            assert counted == (known[channel].size if unknown is None else unknown), (record["case"], name)


@pytest.mark.parametrize("seed", range(3))
def test_boxes_inside_and_around_a_crop(converted, seed):
    """Any box: inside the crop it equals the converted voxels; past it, raw context and unknown labels."""
    out, _ = converted
    rng = np.random.default_rng(seed)
    record = sorted(_cases(out), key=lambda r: r["case"])[seed]
    reader, plan = _reader(record)
    image = read_volume(out / record["image"]["path"]).data
    label = read_volume(out / record["label"]["path"]).data
    (lo, hi) = reader.labelled
    a = [int(rng.integers(l, h - 2)) for l, h in zip(lo, hi)]
    b = [int(rng.integers(x + 1, h + 1)) for x, h in zip(a, hi)]
    box = reader.read(tuple(a), tuple(b))
    at = tuple(slice(x - l, y - l) for x, y, l in zip(a, b, lo))
    np.testing.assert_array_equal(box.image, image[at])
    present, _ = box.unpacked(len(DEFAULT_CLASS_MAP))
    for name in record["annotated"]:
        channel = DEFAULT_CLASS_MAP.names.index(name)
        np.testing.assert_array_equal(present[channel], label[at] == channel + 1)
    # a box reaching 6 voxels past the crop on every side: the raw goes on, the labels stop
    grown = reader.read(tuple(x - 6 for x in lo), tuple(x + 6 for x in hi))
    inner = tuple(slice(6, -6) for _ in lo)
    np.testing.assert_array_equal(grown.image[inner], image)
    _, known = grown.unpacked(len(DEFAULT_CLASS_MAP))
    assert not known[:, :6].any() and not known[:, -6:].any()
    raw = plan.raw_level
    region = tuple(slice(s - 6, s) for s in plan.start)
    level = open_store(reader.store.path).raw.group[raw.path]
    if all(s >= 6 for s in plan.start):  # raw exists before the crop: the patch holds it, not zeros
        np.testing.assert_array_equal(grown.image[:6, :6, :6], np.asarray(level[region]))
