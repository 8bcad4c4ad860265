#!/usr/bin/env bash
# The trainer on one GPU beside cellcheck's predictions (trainer/gpu_check.py): one AMP training step
# of each network at its L40S template configuration and at the largest batch `cellcheck predict`
# says fits, with torch.cuda.max_memory_allocated/reserved and NVML; the loss eager vs compiled.
# Under 8 minutes on one GPU. Without a GPU it says so and exits 0 (CI runs it that way).
#   bash scripts/gpu_check.sh [OUT.json] [--models segresnet,dints] [--budget-s 420]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu_check.json}"
shift || true
exec .venv/bin/python -m trainer.gpu_check --out "$out" "$@"
