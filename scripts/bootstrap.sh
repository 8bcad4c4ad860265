#!/usr/bin/env bash
# Create .venv from scratch with cellcheck and its test tools.
# torch is pinned FIRST (a CPU wheel here); anything that pulls torch in later then finds it
# satisfied instead of downloading a multi-GB CUDA build. On a GPU machine set TORCH_SPEC to
# the build you want (e.g. TORCH_SPEC="torch==2.13.0" with your CUDA index), or "" to keep one.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC-torch==2.13.0}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if [ -n "$TORCH_SPEC" ]; then
    .venv/bin/python -m pip install --quiet "$TORCH_SPEC"
fi
.venv/bin/python -m pip install --quiet -e ".[dev]"
.venv/bin/python -c "import torch, monai, zarr, cellcheck; print(f'cellcheck {cellcheck.__version__}: torch {torch.__version__}, monai {monai.__version__}, zarr {zarr.__version__}')"
