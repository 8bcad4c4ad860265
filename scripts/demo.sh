#!/usr/bin/env bash
# Set up from scratch, generate a CellMap-like dataset with every planted defect, and audit it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
rm -rf demo
.venv/bin/python -m fixtures make demo --seed 0 --defects all
echo "--- cellcheck audit demo/datalist.json (exit 1 expected: the defects are planted)"
.venv/bin/cellcheck audit demo/datalist.json --format text || echo "exit status $?"
echo "--- cellcheck audit demo/zarr"
.venv/bin/cellcheck audit demo/zarr --format text || echo "exit status $?"
