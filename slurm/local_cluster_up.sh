#!/usr/bin/env bash
# Bring up a throwaway single-node SLURM cluster on this machine (dev / CI only).
#
# This is NOT how you use a real cluster: there you only need slurm/submit.py.
# It makes the local machine a one-node SLURM cluster (partition "debug") so the
# sbatch templates and the `-m slow` SLURM tests can run for real.
#
# Usage (as root, no systemd needed):
#   bash slurm/local_cluster_up.sh        # installs slurm+munge if missing, starts, waits for idle
#   bash slurm/local_cluster_down.sh      # stops everything again
#
# Idempotent: if munged, slurmctld and slurmd are already running and the node is
# usable, it says so and exits 0. Environment knobs:
#   LOCAL_SLURM_WAIT_S   seconds to wait for the node to become idle (default 60)
#   LOCAL_SLURM_CPUS     CPUs the node advertises (default: nproc)
set -euo pipefail

start_ns=$(date +%s%N)
wait_s=${LOCAL_SLURM_WAIT_S:-60}
conf=/etc/slurm/slurm.conf

elapsed() { echo "$(( ($(date +%s%N) - start_ns) / 1000000 ))" | awk '{printf "%.1f", $1 / 1000}'; }
alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
node_state() { timeout 5 sinfo -h -N -o %T 2>/dev/null | head -n1 || true; }

if [[ $(id -u) -ne 0 ]]; then
    echo "local_cluster_up: must run as root (it starts munged, slurmctld and slurmd)" >&2
    exit 1
fi

if alive /run/munge/munged.pid && alive /run/slurm/slurmctld.pid && alive /run/slurm/slurmd.pid \
    && [[ $(node_state) =~ ^(idle|mixed|allocated|completing)$ ]]; then
    echo "local SLURM cluster is already up (node $(hostname -s): $(node_state)); nothing to do"
    exit 0
fi

# --- packages (a fresh CI machine has none of them) ----------------------------------
missing=()
for bin in /usr/sbin/slurmctld /usr/sbin/slurmd /usr/bin/sbatch /usr/sbin/munged; do
    [[ -x $bin ]] || missing+=("$bin")
done
if (( ${#missing[@]} )); then
    echo "installing slurm + munge (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi

# --- munge ----------------------------------------------------------------------------
mkdir -p /run/munge
chown munge:munge /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    mungekey --create --keyfile /etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 600 /etc/munge/munge.key
fi
if ! alive /run/munge/munged.pid; then
    runuser -u munge -- /usr/sbin/munged
fi

# --- slurm.conf -------------------------------------------------------------------------
node=$(hostname -s)   # NodeName must equal the short host name
cpus=${LOCAL_SLURM_CPUS:-$(nproc)}
mem_mb=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/slurm
# Three settings keep preemption tests short: KillWait=5 (SIGKILL 5 s after SIGTERM instead
# of 30 s); cred_expire=5 (a requeued job may start again cred_expire+1 s after the
# requeue instead of 121 s; it is also the step credential lifetime, ample on one node);
# sched_interval/bf_interval=1 (nothing else wakes the scheduler when that begin time
# passes, so by default the requeued job would wait up to 30-60 s more).
# Job state is kept across restarts, so job ids (and therefore the default run
# directories runs/<model>-slurm-<jobid>) never repeat.
cat > "$conf" <<CONF
# Written by slurm/local_cluster_up.sh: a one-node test cluster.
ClusterName=local
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=5
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
KillWait=5
SchedulerParameters=sched_interval=1,bf_interval=1
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF

# --- daemons (both daemonise themselves) -------------------------------------------------
alive /run/slurm/slurmctld.pid || /usr/sbin/slurmctld
alive /run/slurm/slurmd.pid || /usr/sbin/slurmd

resumed=0
for _ in $(seq $(( wait_s * 4 ))); do
    state=$(node_state)
    case $state in
        idle|mixed|allocated|completing)
            echo "local SLURM cluster up: node $node ($cpus CPUs) is $state after $(elapsed) s"
            exit 0 ;;
        down*|drain*|drained*|fail*)
            # left over from an unclean stop: put the node back into service once
            if (( ! resumed )); then
                scontrol update NodeName="$node" State=RESUME || true
                resumed=1
            fi ;;
    esac
    sleep 0.25
done

echo "local_cluster_up: node $node not idle after ${wait_s} s (state: '$(node_state)')" >&2
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
