#!/usr/bin/env bash
# CI step: bring up a private single-node SLURM on this machine, run the SLURM test
# (tests/workflow/test_slurm.py: a subset of the quick profile through profiles/slurm, compared bit for
# bit with a local run), and stop every daemon this script started, by process id, whatever
# the outcome.
#
#   tests/workflow/slurm/run_slurm_test.sh [extra pytest arguments]
#
# Run from anywhere as root (it installs Debian's slurm-wlm and munge with apt-get and runs the
# daemons as root). The Python environment is $VENV if set, else the active virtualenv
# ($VIRTUAL_ENV), else <repo>/.venv. The SLURM executor plugin is pip-installed into it.
#
# Everything the daemons need (munge key and socket, slurm.conf, state, logs) lives in a fresh
# temporary directory, pointed to by SLURM_CONF; nothing under /etc is modified. The cluster
# listens on the ports SLURM_TEST_CTLD_PORT / SLURM_TEST_SLURMD_PORT (default 6817 / 6818),
# which must be free. SLURM_TEST_KEEP=1 keeps the temporary directory for inspection;
# SLURM_TEST_CMD='...' runs that shell command against the cluster instead of pytest.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
VENV=${VENV:-${VIRTUAL_ENV:-$REPO/.venv}}
PY=$VENV/bin/python
PLUGIN="snakemake-executor-plugin-slurm==2.8.0"
CTLD_PORT=${SLURM_TEST_CTLD_PORT:-6817}
SLURMD_PORT=${SLURM_TEST_SLURMD_PORT:-6818}

say() { printf '[slurm-test %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (apt-get, and the SLURM daemons run as root)"
[[ -x $PY ]] || die "no python at $PY: activate the venv or set VENV=/path/to/venv"

# ----------------------------------------------------------------------------- software
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
        || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    say "installing slurm-wlm and munge (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge >/dev/null
fi
say "$(slurmctld -V), $(munged -V 2>&1 | head -1)"
"$PY" -m pip install -q "$PLUGIN"

# ----------------------------------------------------------------------------- state dir
STATE=$(mktemp -d /tmp/slurm-test.XXXXXX)
chmod 755 "$STATE"
mkdir -p "$STATE"/{munge,ctld,slurmd,log}
SYS_CONF=/etc/slurm/slurm.conf
SYS_CONF_BACKUP=/etc/slurm/slurm.conf.before-slurm-test

PIDS=()  # daemons this script started, stopped in reverse order on exit

stop_daemons() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [[ -n ${SLURMCTLD_PID:-} ]] && kill -0 "$SLURMCTLD_PID" 2>/dev/null; then
        # Jobs still queued or running (a failed or interrupted test) are cancelled by id, so no
        # slurmstepd outlives the cluster.
        local jobs
        jobs=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
        if [[ -n ${jobs// /} ]]; then
            say "cancelling leftover jobs: $jobs"
            # shellcheck disable=SC2086
            scancel $jobs
            for _ in $(seq 30); do
                [[ -z $(squeue -h -t PD,R,CG -o %i 2>/dev/null) ]] && break
                sleep 1
            done
        fi
    fi
    # The cluster's slurm.conf at the default path comes out again; a previous one goes back.
    if [[ ${CONF_INSTALLED:-0} == 1 ]]; then
        rm -f "$SYS_CONF"
        [[ -e $SYS_CONF_BACKUP || -L $SYS_CONF_BACKUP ]] && mv "$SYS_CONF_BACKUP" "$SYS_CONF"
    fi
    local i pid
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[i]}
        kill -0 "$pid" 2>/dev/null || continue
        say "stopping pid $pid ($(ps -o comm= -p "$pid"))"
        kill -TERM "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && { say "pid $pid ignored TERM: KILL"; kill -KILL "$pid"; }
        wait "$pid" 2>/dev/null
    done
    if [[ $rc -ne 0 ]]; then
        for f in "$STATE"/log/*.log; do
            [[ -f $f ]] || continue
            say "--- tail of $f"; tail -n 25 "$f" >&2
        done
    fi
    if [[ ${SLURM_TEST_KEEP:-0} == 1 ]]; then
        say "kept $STATE"
    else
        rm -rf "$STATE"
    fi
    say "exit status $rc"
    exit "$rc"
}
trap stop_daemons EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ----------------------------------------------------------------------------- munge
# A private key and socket: no system munged is touched or needed.
mungekey --create --keyfile="$STATE/munge/munge.key"
munged --foreground --force \
    --socket="$STATE/munge/munge.socket" \
    --key-file="$STATE/munge/munge.key" \
    --pid-file="$STATE/munge/munged.pid" \
    --seed-file="$STATE/munge/munged.seed" \
    --log-file="$STATE/log/munged.log" 2>>"$STATE/log/munged.out" &
PIDS+=($!)
for _ in $(seq 50); do [[ -S $STATE/munge/munge.socket ]] && break; sleep 0.1; done
[[ -S $STATE/munge/munge.socket ]] || die "munged did not create its socket"
munge --socket="$STATE/munge/munge.socket" -n | unmunge --socket="$STATE/munge/munge.socket" \
    >/dev/null || die "munge round trip failed"

# ----------------------------------------------------------------------------- slurm.conf
NODE=$(hostname -s)
NCPU=$(nproc)
MEM_MB=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)  # a bit under the machine's
export SLURM_CONF=$STATE/slurm.conf
cat >"$SLURM_CONF" <<EOF
# Generated by tests/workflow/slurm/run_slurm_test.sh: a throwaway single-node cluster.
ClusterName=handbackprop-ci
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$STATE/munge/munge.socket
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups in a container or VM without systemd: plain process tracking, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# No slurmdbd: sacct cannot report states, the workflow uses squeue (--slurm-status-command).
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
# Finished jobs stay visible to squeue/scontrol for an hour: the status checks and the test's
# assertions read them there.
MinJobAge=3600
InactiveLimit=0
KillWait=10
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$NCPU RealMemory=$MEM_MB State=UNKNOWN
PartitionName=ci Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
# SLURM_CONF reaches the daemons, sbatch and the batch jobs, but the executor plugin strips
# every SLURM_* variable except the job's identity before its nested `srun`, which then reads
# the default path only. So the config is also linked there for the test's lifetime.
[[ -e $SYS_CONF_BACKUP || -L $SYS_CONF_BACKUP ]] \
    && die "$SYS_CONF_BACKUP exists: an earlier run did not clean up; restore it by hand"
mkdir -p "$(dirname "$SYS_CONF")"
if [[ -e $SYS_CONF || -L $SYS_CONF ]]; then
    say "moving the existing $SYS_CONF aside to $SYS_CONF_BACKUP for the test"
    mv "$SYS_CONF" "$SYS_CONF_BACKUP"
fi
CONF_INSTALLED=1
ln -s "$SLURM_CONF" "$SYS_CONF"

say "starting slurmctld and slurmd (node $NODE, $NCPU CPUs, $MEM_MB MB; $STATE)"
slurmctld -D -i >"$STATE/log/slurmctld.out" 2>&1 &
PIDS+=($!); SLURMCTLD_PID=$!
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.2; done
scontrol ping | grep -q UP || die "slurmctld is not responding"
slurmd -D -N "$NODE" >"$STATE/log/slurmd.out" 2>&1 &
PIDS+=($!)

state=""
for _ in $(seq 120); do
    state=$(sinfo -h -N -n "$NODE" -o %t 2>/dev/null || true)
    [[ $state == idle ]] && break
    sleep 0.5
done
[[ $state == idle ]] || die "node $NODE is '$state', not idle, after 60 s"
sinfo >&2

# ----------------------------------------------------------------------------- the test
export PATH=$VENV/bin:$PATH  # jobs inherit it (sbatch --export=ALL), and the venv's snakemake
export HANDBACKPROP_SLURM_REQUIRED=1  # the test fails, never skips, when the cluster is missing
cd "$REPO"
if [[ -n ${SLURM_TEST_CMD:-} ]]; then  # debugging: another command against the same cluster
    say "running $SLURM_TEST_CMD"
    bash -c "$SLURM_TEST_CMD"
    exit
fi
say "running pytest -m slurm tests/workflow/test_slurm.py"
"$PY" -m pytest -m slurm tests/workflow/test_slurm.py -p no:cacheprovider -v -rs "$@"
