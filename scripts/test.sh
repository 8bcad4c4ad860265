#!/usr/bin/env bash
# Set up from scratch, run the whole test suite, then the benchmarks; the check scripts print the
# ratios and fail on unbounded audit memory. The loss runs at its full 96^3 size; its speed and
# memory ratios, like convert's throughput against reading its chunks once, are printed, never
# enforced (wall clock on a shared machine). The learning benchmark's quick mode checks only the
# direction (the masked loss beats the unmasked one). The GPU check runs last: without a GPU it says
# so and exits 0. JSON lands in .ci-artifacts/. The suite runs on every core (pytest-xdist; the SLURM
# tests share one worker); PYTEST_JOBS=0 runs it in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/ci_slurm.sh   # a real single-node SLURM for tests/slurm (no-op when installed; tests skip without root)
.venv/bin/python -m pytest -n "${PYTEST_JOBS:-auto}" --dist loadgroup -m "not alone"
.venv/bin/python -m pytest -m alone  # memory measured across a process tree: no other test beside it
# The audit and its readers again under zarr 2, as installed beside the CellMap toolbox (zarr < 3).
VENV=.venv-zarr2 EXTRA_SPEC="zarr>=2.18,<3" bash scripts/bootstrap.sh
# The store loader too: its reader against convert, and its workers opening their own stores under zarr 2.
.venv-zarr2/bin/python -m pytest -p no:cacheprovider -n "${PYTEST_JOBS:-auto}" tests/readers tests/checks tests/test_audit_fixtures.py \
    tests/test_stats.py tests/test_readonly.py tests/cellmap tests/trainer/test_stores.py
mkdir -p .ci-artifacts
CELLCHECK_BENCH_QUICK=1 .venv/bin/python -m pytest tests/benchmarks/test_audit_benchmark.py --benchmark-only \
    --benchmark-json=.ci-artifacts/audit_benchmarks.json
CELLCHECK_BENCH=1 .venv/bin/python -m pytest tests/benchmarks/test_loss_benchmark.py --benchmark-only \
    --benchmark-json=.ci-artifacts/loss_benchmarks.json
.venv/bin/python tests/benchmarks/check_loss_ratio.py .ci-artifacts/loss_benchmarks.json
.venv/bin/python tests/benchmarks/check_audit_ratios.py .ci-artifacts/audit_benchmarks.json
CELLCHECK_BENCH_QUICK=1 .venv/bin/python -m pytest tests/benchmarks/test_convert_benchmark.py --benchmark-only \
    --benchmark-json=.ci-artifacts/convert_benchmarks.json
.venv/bin/python tests/benchmarks/check_convert_ratio.py .ci-artifacts/convert_benchmarks.json
.venv/bin/python tests/benchmarks/store_loader.py --quick --json .ci-artifacts/store_loader.json  # printed, never enforced
.venv/bin/python tests/benchmarks/learning.py --quick --jobs 2 --out "$(mktemp -d)" \
    --json .ci-artifacts/learning_quick.json
bash scripts/gpu_check.sh .ci-artifacts/gpu_check.json
