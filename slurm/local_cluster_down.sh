#!/usr/bin/env bash
# Stop the throwaway single-node SLURM cluster started by slurm/local_cluster_up.sh.
#
# Usage (as root):  bash slurm/local_cluster_down.sh
#
# Runs `scontrol shutdown` (stops slurmctld and slurmd), then stops munged by the PID
# in /run/munge/munged.pid, and waits until all three daemons are gone. Running jobs
# are killed by slurmd on its way down; their records stay in the controller state.
# Safe to run when the cluster is already down.
# Environment knob: LOCAL_SLURM_WAIT_S  seconds to wait for the daemons (default 30)
set -euo pipefail

start_ns=$(date +%s%N)
wait_s=${LOCAL_SLURM_WAIT_S:-30}

elapsed() { echo "$(( ($(date +%s%N) - start_ns) / 1000000 ))" | awk '{printf "%.1f", $1 / 1000}'; }
pid_of() { [[ -s $1 ]] && cat "$1" || true; }
alive_pid() { [[ -n $1 ]] && kill -0 "$1" 2>/dev/null; }

ctld=$(pid_of /run/slurm/slurmctld.pid)
slurmd=$(pid_of /run/slurm/slurmd.pid)
munged=$(pid_of /run/munge/munged.pid)

if ! alive_pid "$ctld" && ! alive_pid "$slurmd" && ! alive_pid "$munged"; then
    echo "local SLURM cluster is already down"
    exit 0
fi

if alive_pid "$ctld"; then
    # needs munged, so it goes first
    timeout 15 scontrol shutdown || echo "local_cluster_down: scontrol shutdown failed" >&2
fi

wait_gone() {  # wait_gone NAME PID
    local name=$1 pid=$2
    for _ in $(seq $(( wait_s * 10 ))); do
        alive_pid "$pid" || return 0
        sleep 0.1
    done
    echo "local_cluster_down: $name (pid $pid) still alive after ${wait_s} s, sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
}

wait_gone slurmctld "$ctld"
if alive_pid "$slurmd"; then
    # slurmd only follows `scontrol shutdown` when the controller could reach it
    kill -TERM "$slurmd" 2>/dev/null || true
fi
wait_gone slurmd "$slurmd"

if alive_pid "$munged"; then
    kill -TERM "$munged"
fi
wait_gone munged "$munged"

echo "local SLURM cluster down after $(elapsed) s"
