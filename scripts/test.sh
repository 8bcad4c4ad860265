#!/usr/bin/env bash
# Set up from scratch and run the whole test suite, then the loss benchmark in its quick mode.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/python -m pytest
