"""`cellcheck convert` throughput against its floor: reading the same raw and label chunks once (zarr, no writing).

Groups (pytest-benchmark, side by side in one run, never asserted as wall-clock):
- `convert vs floor`: convert (one process) of every crop at 8 nm, against decompressing exactly the raw
  boxes and class-array levels that conversion reads, once each.
`python tests/benchmarks/check_convert_ratio.py BENCH.json` prints the ratio (not gated).

Sizes: 8 nm crops of 160^3 (CELLCHECK_BENCH=1) or 96^3 (CELLCHECK_BENCH_QUICK=1, CI), six clean crops.
Run: CELLCHECK_BENCH_QUICK=1 pytest tests/benchmarks/test_convert_benchmark.py --benchmark-only
--benchmark-json=BENCH.json
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from cellcheck.classes import DEFAULT_CLASS_MAP
from cellcheck.convert import Options, convert
from fixtures import make_dataset

QUICK = os.environ.get("CELLCHECK_BENCH_QUICK", "") not in ("", "0")
SIZE = 96 if QUICK else 160
EIGHT = (8.0, 8.0, 8.0)

pytestmark = pytest.mark.skipif(
    not (QUICK or os.environ.get("CELLCHECK_BENCH")),
    reason="convert benchmarks write large data: set CELLCHECK_BENCH_QUICK=1 (CI) or CELLCHECK_BENCH=1",
)


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("convbench") / "data"
    make_dataset(root, seed=0, defects="none", n_clean=6, crop_shape=(SIZE,) * 3)
    probe = tmp_path_factory.mktemp("probe") / "out"
    convert(root / "zarr", probe, Options(EIGHT, DEFAULT_CLASS_MAP))
    return root / "zarr", json.loads((probe / "datalist.json").read_text())["cellcheck"]["cases"]


def _floor(cases: dict) -> int:
    """Decompress every raw box and class-array level the conversion reads, once; returns voxels read."""
    voxels = 0
    for rec in cases.values():
        store = zarr.open_group(rec["store_path"], mode="r")
        box = tuple(slice(a, b) for a, b in zip(*rec["raw_box"]))
        voxels += np.asarray(store[f"recon-1/em/fibsem-uint8/{rec['raw_level']}"][box]).size
        crop = store[f"recon-1/labels/groundtruth/{rec['crop']}"]
        for name in rec["annotated"] + list(rec["dropped"]):
            voxels += np.asarray(crop[name][rec["label_level"]][...]).size
    return voxels


def _record(benchmark, impl: str, cases: dict) -> None:
    benchmark.group = "convert vs floor"
    voxels = sum(int(np.prod([b - a for a, b in zip(*r["raw_box"])])) for r in cases.values())
    benchmark.extra_info.update(impl=impl, crops=len(cases), size=SIZE, output_voxels=voxels)


def test_convert_one_process(benchmark, stores, tmp_path):
    root, cases = stores
    _record(benchmark, "cellcheck", cases)
    out = tmp_path / "out"

    def run():
        shutil.rmtree(out, ignore_errors=True)
        return convert(root, out, Options(EIGHT, DEFAULT_CLASS_MAP), jobs=1)

    result = benchmark.pedantic(run, rounds=3, iterations=1)
    assert len(result.converted) == len(cases)


def test_floor_read_once(benchmark, stores):
    root, cases = stores
    _record(benchmark, "floor", cases)
    assert benchmark.pedantic(_floor, args=(cases,), rounds=3, iterations=1) > 0
