#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for CI and for trying the workflow's SLURM profiles.
#
#   .ci/slurm-cluster.sh install              install Debian's slurm-wlm and munge if missing (needs root or sudo)
#   .ci/slurm-cluster.sh up     [STATE_DIR]   install them if missing, start munged, slurmctld, slurmd
#   .ci/slurm-cluster.sh status [STATE_DIR]   sinfo of that cluster
#   .ci/slurm-cluster.sh down   [STATE_DIR]   cancel its jobs, stop its daemons by their pid files
#
# STATE_DIR (else $SLURM_CLUSTER_DIR, else /tmp/cce-slurm) holds all of it: slurm.conf, the munge key and
# socket, spool and state directories, logs and pid files. A cluster configured in /etc/slurm is neither
# read nor changed: clients reach this one through SLURM_CONF=$STATE_DIR/slurm.conf, and through
# $STATE_DIR/bin, whose srun, sbatch, squeue, ... set SLURM_CONF themselves (`up` prints both lines).
# Put that directory first on PATH: snakemake-executor-plugin-slurm-jobstep 0.6.1 strips every SLURM_*
# variable, SLURM_CONF included, from the `srun` it runs inside each job. The daemons listen on ports
# $SLURM_CLUSTER_PORT and +1 (default 16817, not SLURM's 6817, so a real slurmd here keeps its port).
#
# What a cluster without slurmdbd, cgroups or GPUs needs (found running the workflow here):
# - no accounting database: jobs leave `sacct` empty, so clients check job states with `squeue`, which
#   lists a finished job (COMPLETED, FAILED, ...) only for MinJobAge seconds after its end. MinJobAge is
#   therefore long (600 s), far beyond Snakemake's status-check delays.
# - ProctrackType=proctrack/linuxproc and TaskPlugin=task/none, which need no cgroup hierarchy.
# - jobcomp/filetxt keeps one line per finished job (JobId, JobState, ...) in $STATE_DIR/log/jobcomp.txt,
#   a history that outlives MinJobAge.
#
# Runs as root, or through `sudo -n` where that works; `up` exits 2 (and says why) when it can neither
# find nor install SLURM, 1 when the daemons do not come up (with their logs' tails). Both commands are
# idempotent: `up` on a running cluster only prints its state, `down` on a stopped one does nothing.
set -euo pipefail

cmd=${1:-}
STATE_DIR=${2:-${SLURM_CLUSTER_DIR:-/tmp/cce-slurm}}
PORT=${SLURM_CLUSTER_PORT:-16817}
NODE=localhost
CONF=$STATE_DIR/slurm.conf
export SLURM_CONF=$CONF

usage() {
    sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 64
}
[ -n "$cmd" ] || usage
case "$STATE_DIR" in /*) ;; *) STATE_DIR=$PWD/$STATE_DIR; CONF=$STATE_DIR/slurm.conf; SLURM_CONF=$CONF ;; esac

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    SUDO=none
fi

as_root() {
    [ "${SUDO[*]}" != none ] || { echo "slurm-cluster: needs root or passwordless sudo" >&2; exit 2; }
    "${SUDO[@]}" "$@"
}

pid_alive() { # pid file -> true when its process runs
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || { [ "${SUDO[*]}" != none ] && "${SUDO[@]}" kill -0 "$pid" 2>/dev/null; }
}

running() { kill -0 "$1" 2>/dev/null || { [ "${SUDO[*]}" != none ] && "${SUDO[@]}" kill -0 "$1" 2>/dev/null; }; }

stop_pidfile() { # name, pid file: SIGTERM, wait up to 30 s, then SIGKILL
    local name=$1 file=$2 pid i
    pid=$(cat "$file" 2>/dev/null) || return 0
    if pid_alive "$file"; then
        as_root kill -TERM "$pid" 2>/dev/null || true
        # By pid, not by the file: slurmd removes its pid file before it has finished stopping.
        for i in $(seq 300); do running "$pid" || break; sleep 0.1; done
        if running "$pid"; then
            echo "slurm-cluster: $name ($pid) ignored SIGTERM for 30 s, killing it" >&2
            as_root kill -KILL "$pid" 2>/dev/null || true
        fi
        echo "stopped $name ($pid)"
    fi
    as_root rm -f "$file"
}

all_up() {
    pid_alive "$STATE_DIR/run/munged.pid" && pid_alive "$STATE_DIR/run/slurmctld.pid" \
        && pid_alive "$STATE_DIR/run/slurmd.pid"
}

show_logs() {
    local f
    for f in munged.log slurmctld.log slurmd.log; do
        [ -e "$STATE_DIR/log/$f" ] || continue
        echo "--- $STATE_DIR/log/$f (last 20 lines)" >&2
        as_root tail -n 20 "$STATE_DIR/log/$f" >&2 || true
    done
}

install_slurm() {
    local missing=() t0=$SECONDS
    for exe in munged slurmctld slurmd sbatch squeue scontrol sinfo; do
        command -v "$exe" >/dev/null || PATH=$PATH:/usr/sbin:/sbin command -v "$exe" >/dev/null || missing+=("$exe")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    if ! command -v apt-get >/dev/null; then
        echo "slurm-cluster: ${missing[*]} not found and no apt-get to install slurm-wlm and munge" >&2
        exit 2
    fi
    [ "${SUDO[*]}" != none ] || {
        echo "slurm-cluster: ${missing[*]} not found; installing slurm-wlm and munge needs root or passwordless sudo" >&2
        exit 2
    }
    echo "installing slurm-wlm and munge (missing: ${missing[*]})"
    # Installing must not start the packages' own daemons on their default config and ports.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e $policy ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee $policy >/dev/null
        as_root chmod 755 $policy
        created_policy=1
    fi
    local rc=0
    { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            slurm-wlm munge >/dev/null; } || rc=$?
    [ $created_policy -eq 0 ] || as_root rm -f $policy
    if [ $rc -ne 0 ]; then
        echo "slurm-cluster: apt-get install slurm-wlm munge failed ($rc)" >&2
        exit 2
    fi
    echo "installed in $((SECONDS - t0)) s: $(dpkg-query -W -f '${Package} ${Version}  ' slurmctld munge)"
}

write_config() {
    local cpus mem_mb user
    cpus=$(nproc)
    mem_mb=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
    user=$( [ "${SUDO[*]}" = "" ] && id -un || echo root )
    as_root mkdir -p "$STATE_DIR"/{munge,ctld,spool,run,log}
    # munged refuses group/world-writable directories on the way to its key and socket.
    as_root chmod 755 "$STATE_DIR" "$STATE_DIR/run" "$STATE_DIR/log"
    as_root chmod 700 "$STATE_DIR/ctld" "$STATE_DIR/spool"
    as_root chmod 711 "$STATE_DIR/munge"
    as_root tee "$CONF" >/dev/null <<EOF
# Written by .ci/slurm-cluster.sh: a one-node test cluster, not for production.
ClusterName=cce-ci
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=$user
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$STATE_DIR/munge/munge.socket
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/spool
SlurmctldPidFile=$STATE_DIR/run/slurmctld.pid
SlurmdPidFile=$STATE_DIR/run/slurmd.pid
SlurmctldLogFile=$STATE_DIR/log/slurmctld.log
SlurmdLogFile=$STATE_DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE_DIR/log/jobcomp.txt
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MinJobAge=600
ReturnToService=2
SlurmdTimeout=300
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    as_root chmod 644 "$CONF"
    if [ ! -s "$STATE_DIR/munge/munge.key" ]; then
        as_root dd if=/dev/urandom of="$STATE_DIR/munge/munge.key" bs=1024 count=1 status=none
    fi
    as_root chmod 400 "$STATE_DIR/munge/munge.key"
    # Client commands bound to this cluster, whatever the caller's environment keeps of SLURM_CONF.
    as_root mkdir -p "$STATE_DIR/bin"
    local exe path
    for exe in srun sbatch squeue scontrol scancel sinfo sacct; do
        path=$(command -v "$exe") || continue
        printf '#!/bin/sh\nSLURM_CONF=%s exec %s "$@"\n' "$CONF" "$path" | as_root tee "$STATE_DIR/bin/$exe" >/dev/null
        as_root chmod 755 "$STATE_DIR/bin/$exe"
    done
}

wait_for() { # seconds, description, command...
    local limit=$1 what=$2 i
    shift 2
    for i in $(seq $((limit * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "slurm-cluster: $what not ready after $limit s" >&2
    show_logs
    exit 1
}

node_idle() { sinfo -h -n "$NODE" -o %T | grep -qx 'idle'; }

up() {
    local t0=$SECONDS
    install_slurm
    PATH=$PATH:/usr/sbin:/sbin
    if all_up; then
        echo "slurm-cluster: already up in $STATE_DIR"
    else
        down_daemons quiet
        write_config
        local t1=$SECONDS
        as_root munged --socket="$STATE_DIR/munge/munge.socket" --key-file="$STATE_DIR/munge/munge.key" \
            --pid-file="$STATE_DIR/run/munged.pid" --log-file="$STATE_DIR/log/munged.log" \
            --seed-file="$STATE_DIR/munge/munged.seed" --force
        wait_for 10 munged test -S "$STATE_DIR/munge/munge.socket"
        # -c: a clean start (no saved jobs); -i: ignore a state file from a different configuration.
        as_root env SLURM_CONF="$CONF" slurmctld -c -i -f "$CONF"
        wait_for 30 slurmctld scontrol ping
        as_root env SLURM_CONF="$CONF" slurmd -f "$CONF" -N "$NODE"
        wait_for 60 "node $NODE (idle)" node_idle
        echo "slurm-cluster: up in $((SECONDS - t1)) s ($(slurmctld -V)) in $STATE_DIR"
    fi
    echo "slurm-cluster: install and bring-up took $((SECONDS - t0)) s"
    sinfo
    echo "export SLURM_CONF=$CONF PATH=$STATE_DIR/bin:\$PATH"
}

down_daemons() {
    if pid_alive "$STATE_DIR/run/slurmctld.pid"; then
        # Cancel this cluster's jobs first: with proctrack/linuxproc a job outlives a stopped slurmd.
        local jobs
        jobs=$(squeue -h -o %i 2>/dev/null || true)
        # shellcheck disable=SC2086
        [ -z "$jobs" ] || as_root env SLURM_CONF="$CONF" scancel $jobs || true
    fi
    stop_pidfile slurmd "$STATE_DIR/run/slurmd.pid"
    stop_pidfile slurmctld "$STATE_DIR/run/slurmctld.pid"
    stop_pidfile munged "$STATE_DIR/run/munged.pid"
    [ "${1:-}" = quiet ] || echo "slurm-cluster: down ($STATE_DIR)"
}

status() {
    if all_up; then
        sinfo
    else
        echo "slurm-cluster: not running in $STATE_DIR" >&2
        exit 3
    fi
}

case "$cmd" in
    install) install_slurm ;;
    up) up ;;
    down) [ ! -d "$STATE_DIR/run" ] || down_daemons ;;
    status) PATH=$PATH:/usr/sbin:/sbin; status ;;
    *) usage ;;
esac
