#!/usr/bin/env bash
# Set up from scratch, run the whole test suite, then the benchmarks in their quick mode.
# The benchmark JSON lands in .ci-artifacts/benchmarks.json; the two check scripts print the
# ratios and fail on a loss kernel slower than 1.5x its reference or on unbounded audit memory.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/ci_slurm.sh   # a real single-node SLURM for tests/slurm (no-op when installed; tests skip without root)
.venv/bin/python -m pytest
mkdir -p .ci-artifacts
CELLCHECK_BENCH_QUICK=1 .venv/bin/python -m pytest tests/benchmarks --benchmark-only \
    --benchmark-json=.ci-artifacts/benchmarks.json
.venv/bin/python tests/benchmarks/check_loss_ratio.py .ci-artifacts/benchmarks.json
.venv/bin/python tests/benchmarks/check_audit_ratios.py .ci-artifacts/benchmarks.json
