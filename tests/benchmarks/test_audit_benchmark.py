"""The audit at scale, measured side by side (pytest-benchmark), never asserted as wall-clock.

Groups, each compared within one run:
- `audit vs DataAnalyzer`: cellcheck audit + stats against MONAI's DataAnalyzer (CPU) on the
  same datalist, both using every core.
- `audit vs floor (nii.gz | zarr)`: cellcheck in one process against only reading and
  decompressing every voxel once with the same library (gzip / zarr), no computation.
- `peak RSS`: a fresh process auditing one crop at two sizes; stored in extra_info.
- `joint pass vs floor (large)`: 12 crops of 160^3 (`.nii.gz`), one process, against only decompressing them.
- `per case (small, 2 jobs)`: 600 crops of ~30^3 audited with 2 jobs, against decompressing them (one
  process): the per-case overhead is the difference over the number of crops.

Sizes: 40 crops of 128^3 plus one of 512^3 by default; CELLCHECK_BENCH_QUICK=1 (CI) uses
8 crops of 64^3 plus one of 192^3, and 224^3 / 448^3 for peak RSS (256^3 / 768^3 in full).
`python tests/benchmarks/check_audit_ratios.py BENCH.json` prints the ratios.
Run: CELLCHECK_BENCH_QUICK=1 pytest tests/benchmarks/test_audit_benchmark.py --benchmark-only
--benchmark-json=BENCH.json
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import zarr

from audit_data import write_nifti_zarr_dataset, write_single_crop, write_small_crops
from cellcheck.audit import run_audit
from cellcheck.audit.options import AuditOptions, default_jobs

QUICK = os.environ.get("CELLCHECK_BENCH_QUICK", "") not in ("", "0")
N, SIZE, BIG = (8, 64, 192) if QUICK else (40, 128, 512)
RSS_SIZES = (224, 448) if QUICK else (256, 768)
LARGE_N, LARGE = (4, 128) if QUICK else (12, 160)  # the joint pass on large crops, against reading them
SMALL_N = 150 if QUICK else 600  # crops of 26..34 voxels per side: where per-case overhead shows

pytestmark = [
    pytest.mark.skipif(
        not (QUICK or os.environ.get("CELLCHECK_BENCH")),
        reason="audit benchmarks write large data: set CELLCHECK_BENCH_QUICK=1 (CI) or CELLCHECK_BENCH=1",
    ),
    pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak memory is read from /proc (Linux)"),
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_nifti_zarr_dataset(tmp_path_factory.mktemp("bench"), N, SIZE, BIG)


def _record(benchmark, group: str, impl: str, **extra) -> None:
    benchmark.group = group
    benchmark.extra_info.update(impl=impl, crops=N + 1, size=SIZE, big=BIG, **extra)


def test_cellcheck_all_cores(benchmark, data):
    _record(benchmark, "audit vs DataAnalyzer", "cellcheck", jobs=default_jobs())
    opts = AuditOptions(jobs=default_jobs())
    run = benchmark.pedantic(run_audit, args=(data["nii"],), kwargs={"options": opts}, rounds=2, iterations=1)
    assert run.cases == N + 1 and not [f for f in run.findings if f.severity.value == "error"]


def test_monai_data_analyzer(benchmark, data, tmp_path):
    from monai.apps.auto3dseg import DataAnalyzer

    _record(benchmark, "audit vs DataAnalyzer", "monai-dataanalyzer", worker=default_jobs())

    def analyze():
        da = DataAnalyzer(str(data["nii"]), dataroot=str(data["nii"].parent), output_path=str(tmp_path / "ds.yaml"),
                          device="cpu", worker=default_jobs())
        return da.get_all_case_stats()

    result = benchmark.pedantic(analyze, rounds=1, iterations=1)
    assert len(result["stats_by_cases"]) == N + 1


@pytest.mark.parametrize("fmt", ["nii", "zarr"])
def test_cellcheck_one_process(benchmark, data, fmt):
    _record(benchmark, f"audit vs floor ({fmt})", "cellcheck", jobs=1)
    run = benchmark.pedantic(run_audit, args=(data[fmt],), kwargs={"options": AuditOptions(jobs=1)}, rounds=3, iterations=1)
    assert run.cases == N + 1


@pytest.mark.parametrize("fmt", ["nii", "zarr"])
def test_floor_read_every_voxel(benchmark, data, fmt):
    """Only decompress every voxel once, same files and library, no computation."""
    _record(benchmark, f"audit vs floor ({fmt})", "floor", jobs=1)
    entries = json.loads(data[fmt].read_text())["training"]
    root = data[fmt].parent
    paths = [root / e[k] for e in entries for k in ("image", "label")]

    def read_all():
        total = 0
        for p in paths:
            if fmt == "nii":
                with gzip.open(p, "rb") as fh:
                    while chunk := fh.read(64 << 20):
                        total += len(chunk)
            else:
                arr = zarr.open_array(str(p), mode="r")
                for z in range(0, arr.shape[0], 64):
                    total += arr[z : z + 64].size
        return total

    assert benchmark.pedantic(read_all, rounds=3, iterations=1) > 0


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    return write_nifti_zarr_dataset(tmp_path_factory.mktemp("large"), LARGE_N - 1, LARGE, LARGE)["nii"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return write_small_crops(tmp_path_factory.mktemp("small"), SMALL_N)


def _decompress_all(datalist) -> int:
    """Only decompress every image and label of a datalist once (gzip, as the floor above)."""
    total = 0
    for e in json.loads(datalist.read_text())["training"]:
        for key in ("image", "label"):
            with gzip.open(datalist.parent / e[key], "rb") as fh:
                while chunk := fh.read(64 << 20):
                    total += len(chunk)
    return total


@pytest.mark.parametrize("impl", ["cellcheck", "floor"])
def test_joint_pass_on_large_crops(benchmark, large, impl):
    benchmark.group = "joint pass vs floor (large)"
    benchmark.extra_info.update(impl=impl, crops=LARGE_N, size=LARGE, jobs=1)
    if impl == "floor":
        assert benchmark.pedantic(_decompress_all, args=(large,), rounds=3, iterations=1) > 0
        return
    run = benchmark.pedantic(run_audit, args=(large,), kwargs={"options": AuditOptions(jobs=1)}, rounds=3, iterations=1)
    assert run.cases == LARGE_N


@pytest.mark.parametrize("impl", ["cellcheck", "floor"])
def test_per_case_cost_on_small_crops(benchmark, small, impl):
    benchmark.group = "per case (small, 2 jobs)"
    benchmark.extra_info.update(impl=impl, crops=SMALL_N, size=30, jobs=2 if impl == "cellcheck" else 1)
    if impl == "floor":
        assert benchmark.pedantic(_decompress_all, args=(small,), rounds=3, iterations=1) > 0
        return
    run = benchmark.pedantic(run_audit, args=(small,), kwargs={"options": AuditOptions(jobs=2)}, rounds=3, iterations=1)
    assert run.cases == SMALL_N


@pytest.mark.parametrize("size", RSS_SIZES)
def test_peak_rss_one_crop(benchmark, tmp_path_factory, size):
    """Peak RSS of a fresh `cellcheck audit` process on one crop; bounded memory means equal peaks."""
    datalist = write_single_crop(tmp_path_factory.mktemp(f"rss{size}"), size)
    # VmHWM is this process's own peak; ru_maxrss would carry the forking parent's over exec
    code = (
        "import sys\n"
        "from cellcheck.audit import run_audit\n"
        "from cellcheck.audit.options import AuditOptions\n"
        "run_audit(sys.argv[1], options=AuditOptions(jobs=1))\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
        "print(int(hwm.split()[1]) * 1024)\n"
    )
    peaks = []

    def audit_in_fresh_process():
        out = subprocess.run([sys.executable, "-c", code, str(datalist)], capture_output=True, text=True, check=True)
        peaks.append(int(out.stdout.strip().splitlines()[-1]))

    _record(benchmark, "peak RSS", "cellcheck", voxels=size**3)
    benchmark.pedantic(audit_in_fresh_process, rounds=1, iterations=1)
    benchmark.extra_info["peak_rss_bytes"] = max(peaks)
    benchmark.extra_info["crop_bytes"] = 2 * size**3  # uint8 image + uint8 label
