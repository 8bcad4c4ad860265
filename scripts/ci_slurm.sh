#!/usr/bin/env bash
# CI: the Debian packages behind the SLURM job tests (tests/slurm: a real single-node cluster,
# scripts/slurm_cluster.sh). Idempotent: nothing to do, and no apt call, when they are installed.
# Without root or apt-get it only says so; those tests then skip with the reason.
set -euo pipefail

need=(munged slurmctld slurmd sbatch scontrol pkill)
missing() { for c in "${need[@]}"; do command -v "$c" >/dev/null || return 0; done; return 1; }

if ! missing; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "ci_slurm: SLURM is not installed and this is not root with apt-get: the SLURM job tests will skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
# the daemons, the client commands, munge and the basic plugins; procps for pkill/pgrep in the job
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge procps; } > "$log" 2>&1; then
    cat "$log" >&2
    echo "ci_slurm: apt-get failed (above)" >&2
    exit 1
fi
rm -f "$log"
if missing; then
    echo "ci_slurm: installed, but still missing one of: ${need[*]}" >&2
    exit 1
fi
echo "ci_slurm: installed slurmd $(dpkg-query -W -f '${Version}' slurmd) and munge"
