#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for tests and for trying the job templates.
#
#   bash scripts/slurm_cluster.sh up DIR [CTLD_PORT SLURMD_PORT]   # then: export SLURM_CONF=DIR/slurm.conf
#   bash scripts/slurm_cluster.sh down DIR
#
#   bash scripts/slurm_cluster.sh config DIR [CTLD_PORT SLURMD_PORT]  # only write DIR/slurm.conf & co.
#   bash scripts/slurm_cluster.sh run DIR     # the daemons in the foreground; SIGTERM stops them
#
# Everything lives under DIR: slurm.conf, gres.conf, a private munge key and socket, state, spool
# and logs. Nothing is written to /etc, so it can run beside a real installation. `run` starts
# munged, slurmctld and slurmd as its own children and, on SIGTERM, stops them by PID and reaps
# them; `up` runs it in the background (its PID in DIR/cluster.pid) and waits for the node.
#
# The node is this host, with all its CPUs, its memory less 2 GiB, and two fake L40S GPUs
# (character devices like /dev/null: jobs get CUDA_VISIBLE_DEVICES and SLURM_GPUS_ON_NODE, torch
# sees no CUDA). Partitions `gpu` (default) and `cpu`, both with the field's 11-day limit. No
# accounting database: finished jobs stay in `scontrol show job` for 15 minutes (MinJobAge) and
# are logged to DIR/log/jobcomp.txt. A requeued job may start again after 5 s (cred_expire;
# SLURM's default makes it wait 2 minutes). Needs root and the packages (scripts/ci_slurm.sh).
set -euo pipefail

usage() {
    echo "usage: $0 up DIR [CTLD_PORT SLURMD_PORT] | down DIR | config DIR [CTLD_PORT SLURMD_PORT] | run DIR" >&2
    exit 2
}

config() {
    local dir="$1" ctld_port="${2:-6817}" slurmd_port="${3:-6818}" host cpus mem_mib cmd
    [ "$(id -u)" = 0 ] || { echo "slurm_cluster: needs root (slurmd runs jobs as their user)" >&2; exit 1; }
    for cmd in munged slurmctld slurmd sbatch; do
        command -v "$cmd" >/dev/null || { echo "slurm_cluster: $cmd not installed; run scripts/ci_slurm.sh" >&2; exit 1; }
    done
    host="$(hostname -s)"
    cpus="$(nproc)"
    mem_mib=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 - 2048 ))
    mkdir -p "$dir"/{state,spool,log,dev,munge/key}
    chmod 755 "$dir/munge"      # the socket: every job user must reach it
    chmod 700 "$dir/munge/key"
    if [ ! -f "$dir/munge/key/munge.key" ]; then  # a private key: this cluster needs no /etc/munge
        head -c 1024 /dev/urandom > "$dir/munge/key/munge.key"
        chmod 400 "$dir/munge/key/munge.key"
    fi
    for i in 0 1; do  # two fake GPUs with /dev/null's device numbers
        [ -e "$dir/dev/nvidia$i" ] || mknod "$dir/dev/nvidia$i" c 1 3
    done
    cat > "$dir/gres.conf" <<EOF
NodeName=$host Name=gpu Type=l40s File=$dir/dev/nvidia[0-1]
EOF
    cat > "$dir/slurm.conf" <<EOF
ClusterName=cellcheck-test
SlurmctldHost=$host
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=5
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
MinJobAge=900
KillWait=30
NodeName=$host CPUs=$cpus RealMemory=$mem_mib Gres=gpu:l40s:2 State=UNKNOWN
PartitionName=gpu Nodes=$host Default=YES MaxTime=11-00:00:00 State=UP
PartitionName=cpu Nodes=$host MaxTime=11-00:00:00 State=UP
EOF
}

run() {
    local dir="$1" pids=() i
    export SLURM_CONF="$dir/slurm.conf"
    [ -f "$SLURM_CONF" ] || { echo "slurm_cluster: no $SLURM_CONF; run config first" >&2; exit 1; }
    stop() {
        trap - TERM INT
        for i in 2 1 0; do  # slurmd, slurmctld, munged
            [ -n "${pids[$i]:-}" ] && kill "${pids[$i]}" 2>/dev/null || true
        done
        for i in 2 1 0; do
            [ -n "${pids[$i]:-}" ] && wait "${pids[$i]}" 2>/dev/null || true
        done
        exit "${1:-0}"
    }
    trap stop TERM INT
    munged --foreground --force --key-file="$dir/munge/key/munge.key" --socket="$dir/munge/munge.socket" \
        --pid-file="$dir/munge/munged.pid" --seed-file="$dir/munge/munged.seed" \
        --log-file="$dir/log/munged.log" &
    pids[0]=$!
    for i in $(seq 1 50); do [ -S "$dir/munge/munge.socket" ] && break; sleep 0.1; done
    slurmctld -D -f "$SLURM_CONF" > "$dir/log/slurmctld.out" 2>&1 &
    pids[1]=$!
    slurmd -D -f "$SLURM_CONF" > "$dir/log/slurmd.out" 2>&1 &
    pids[2]=$!
    echo "${pids[*]}" > "$dir/daemons.pids"
    wait -n "${pids[@]}" || true  # returns when SIGTERM arrives (stop exits) or a daemon died
    echo "slurm_cluster: a daemon exited; stopping the others (logs in $dir/log)" >&2
    stop 1
}

up() {
    local dir i
    dir="$(mkdir -p "$1" && cd "$1" && pwd)"
    shift
    config "$dir" "$@"
    export SLURM_CONF="$dir/slurm.conf"
    setsid bash "$0" run "$dir" > "$dir/log/cluster.out" 2>&1 < /dev/null &
    echo $! > "$dir/cluster.pid"
    for i in $(seq 1 100); do
        if sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            echo "export SLURM_CONF=$SLURM_CONF"
            return 0
        fi
        sleep 0.2
    done
    echo "slurm_cluster: the node did not come up in 20 s; logs in $dir/log" >&2
    tail -n 20 "$dir"/log/* >&2 || true
    down "$dir"
    exit 1
}

running() {  # not exited; a zombie waiting for a parent that never reaps counts as gone
    [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status"
}

down() {
    local dir="$1" pid
    [ -f "$dir/cluster.pid" ] || { echo "slurm_cluster: no $dir/cluster.pid: not started with up" >&2; exit 1; }
    pid="$(cat "$dir/cluster.pid")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do running "$pid" || break; sleep 0.1; done
    rm -f "$dir/cluster.pid"
}

case "${1:-}" in
    up) [ $# -ge 2 ] || usage; shift; up "$@" ;;
    down) [ $# -eq 2 ] || usage; down "$2" ;;
    config) [ $# -ge 2 ] || usage; shift; mkdir -p "$1"; config "$(cd "$1" && pwd)" "${@:2}" ;;
    run) [ $# -eq 2 ] || usage; run "$(cd "$2" && pwd)" ;;
    *) usage ;;
esac
