#!/usr/bin/env bash
# Create a virtual environment from scratch with cellcheck and its test tools (.venv unless VENV says).
# torch is pinned FIRST (a CPU wheel here); anything that pulls torch in later then finds it
# satisfied instead of downloading a multi-GB CUDA build. On a GPU machine set TORCH_SPEC to
# the build you want (e.g. TORCH_SPEC="torch==2.13.0" with your CUDA index), or "" to keep one.
# EXTRA_SPEC adds requirements to the install, e.g. EXTRA_SPEC="zarr>=2.18,<3" for the environment
# of a CellMap toolbox user (it pins zarr < 3).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
TORCH_SPEC="${TORCH_SPEC-torch==2.13.0}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
if [ -n "$TORCH_SPEC" ]; then
    "$VENV/bin/python" -m pip install --quiet "$TORCH_SPEC"
fi
"$VENV/bin/python" -m pip install --quiet -e ".[dev]" ${EXTRA_SPEC:+"$EXTRA_SPEC"}
"$VENV/bin/python" -c "import torch, monai, zarr, cellcheck; print(f'cellcheck {cellcheck.__version__}: torch {torch.__version__}, monai {monai.__version__}, zarr {zarr.__version__}')"
