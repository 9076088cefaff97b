#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine (localhost), for the tests marked `slurm` and for trying
# `vicreg-train --launcher slurm` without a cluster. See docs/slurm.md.
#
#   scripts/slurm_local.sh [start]   install (apt: slurm-wlm, munge) if needed, write /etc/slurm/slurm.conf,
#                                    start munged, slurmctld and slurmd as root, wait until the node is idle
#                                    and a test job runs. Running it again is harmless (a running cluster
#                                    with the same configuration is left alone).
#   scripts/slurm_local.sh status    is the cluster up? (exit 0 if so)
#   scripts/slurm_local.sh stop      stop the three daemons this script started (by their pid files)
#
# Exit status: 0 cluster up; 2 usage; 3 not root; 4 no apt-get and SLURM not installed; 5 apt install
# failed; 6 a daemon did not start; 7 the node never became idle or the test job failed.
# Environment: SLURM_LOCAL_TIMEOUT (seconds to wait for the node and the test job, default 60).
set -uo pipefail

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
LOG_DIR=/var/log/slurm
STATE_DIR=/var/lib/slurm
RUN_DIR=/run/slurm-local
CTLD_PID=$RUN_DIR/slurmctld.pid
SLURMD_PID=$RUN_DIR/slurmd.pid
MUNGE_PID=$RUN_DIR/munged.pid
MUNGE_SOCKET=/run/munge/munge.socket.2
MUNGE_LOG=/var/log/munge/munged.log
TIMEOUT=${SLURM_LOCAL_TIMEOUT:-60}

say() { echo "slurm_local: $*"; }
fail() {  # fail CODE MESSAGE: print the reason and where to look, then exit CODE
  local code=$1; shift
  echo "slurm_local: error: $*" >&2
  [ "$code" -ge 5 ] || exit "$code"
  echo "slurm_local: logs: $LOG_DIR/slurmctld.log, $LOG_DIR/slurmd.log, $MUNGE_LOG; config: $CONF" >&2
  for f in "$MUNGE_LOG" "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log"; do
    [ -s "$f" ] && { echo "--- last lines of $f" >&2; tail -n 8 "$f" >&2; }
  done
  exit "$code"
}
# alive PIDFILE: the daemon named like the file (slurmctld.pid -> slurmctld) runs under that pid.
alive() { [ -s "$1" ] && [ "$(cat "/proc/$(cat "$1")/comm" 2>/dev/null)" = "$(basename "$1" .pid)" ]; }
node_name() { hostname -s; }

# The node state as sinfo prints it (idle, mix, alloc, down*, drain...), empty when the controller is silent.
node_state() { timeout 5 sinfo -h -N -n "$(node_name)" -o %t 2>/dev/null | head -n 1; }

cluster_ready() {
  case "$(node_state)" in idle|mix|alloc|mixed|allocated|comp) return 0 ;; *) return 1 ;; esac
}

# CPUs this process may use (affinity and cgroup quota), not the host's: jobs then never oversubscribe.
cpu_count() { nproc; }

# Memory in MB: the lower of MemTotal and the cgroup limit, less 10% for the daemons and the system.
memory_mb() {
  local mem limit
  mem=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
  for f in /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes; do
    if [ -r "$f" ]; then
      limit=$(cat "$f")
      if [ "$limit" != max ] && [ "$((limit / 1048576))" -lt "$mem" ]; then mem=$((limit / 1048576)); fi
    fi
  done
  echo $((mem * 9 / 10))
}

write_config() {  # writes the configuration to $1
  local node cpus mem
  node=$(node_name); cpus=$(cpu_count); mem=$(memory_mb)
  cat >"$1" <<EOF
# Written by vicreg-bench scripts/slurm_local.sh: a single-node cluster on localhost, all daemons as root.
ClusterName=local
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A requeued job waits for its old credential to expire before it starts again: 120 s by default, 15 s here.
AuthInfo=cred_expire=15
StateSaveLocation=$STATE_DIR/slurmctld
SlurmdSpoolDir=$STATE_DIR/slurmd
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
# No cgroups in a container: track processes through /proc, bind no tasks.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# No slurmdbd: finished jobs are logged here instead (one line per job).
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG_DIR/jobcomp.log
# Finished jobs stay visible to scontrol for an hour (the job-state poller reads them there).
MinJobAge=3600
# A node that was down comes back by itself once slurmd registers again.
ReturnToService=2
SlurmdTimeout=30
KillWait=5
MpiDefault=none
SchedulerType=sched/backfill
# Look at pending jobs every few seconds (a requeued job becomes eligible with no event to wake the scheduler).
SchedulerParameters=bf_interval=5,sched_interval=5
# Cores and memory are consumable: several small jobs share the node.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default, a job that asks no memory asks for all of it, and a second job waits forever.
DefMemPerCPU=$((mem / cpus))
# The node is declared with what this container may use ($cpus CPUs, $mem MB), not what slurmd sees.
SlurmdParameters=config_overrides
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
}

install_packages() {
  command -v apt-get >/dev/null 2>&1 || fail 4 "SLURM is not installed and there is no apt-get to install it (install slurm-wlm and munge)"
  say "installing slurm-wlm and munge with apt-get"
  # No init system in a container: stop the packages' scripts from starting daemons; this script starts them.
  local policy=/usr/sbin/policy-rc.d own_policy=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; own_policy=1; fi
  local log=/tmp/slurm_local_apt.log ok=1
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge; } >"$log" 2>&1 || ok=0
  [ "$own_policy" = 1 ] && rm -f "$policy"
  [ "$ok" = 1 ] || { tail -n 20 "$log" >&2; fail 5 "apt-get install slurm-wlm munge failed (full output: $log)"; }
}

start_munge() {
  if echo | timeout 5 munge --socket="$MUNGE_SOCKET" 2>/dev/null | timeout 5 unmunge --socket="$MUNGE_SOCKET" >/dev/null 2>&1; then
    return 0
  fi
  mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge "$RUN_DIR"
  if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null 2>&1; then mungekey --create --keyfile /etc/munge/munge.key >/dev/null
    else dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; fi
  fi
  chown root:root /etc/munge /etc/munge/munge.key /var/lib/munge /var/log/munge /run/munge
  chmod 0700 /etc/munge /var/lib/munge /var/log/munge
  chmod 0755 /run/munge
  chmod 0400 /etc/munge/munge.key
  rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
  say "starting munged"
  munged --socket "$MUNGE_SOCKET" --pid-file "$MUNGE_PID" --log-file "$MUNGE_LOG" --force \
    || fail 6 "munged did not start"
  for _ in $(seq 20); do
    echo | munge --socket="$MUNGE_SOCKET" 2>/dev/null | unmunge --socket="$MUNGE_SOCKET" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  fail 6 "munged runs but munge | unmunge fails"
}

stop_daemon() {  # stop_daemon PIDFILE NAME: TERM, wait up to 10 s
  alive "$1" || return 0
  local pid; pid=$(cat "$1")
  say "stopping $2 (pid $pid)"
  kill "$pid" 2>/dev/null
  for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null
}

start_slurm() {
  mkdir -p "$STATE_DIR/slurmctld" "$STATE_DIR/slurmd" "$RUN_DIR"
  if ! alive "$CTLD_PID"; then
    say "starting slurmctld"
    slurmctld || fail 6 "slurmctld did not start"
  fi
  if ! alive "$SLURMD_PID"; then
    say "starting slurmd"
    slurmd || fail 6 "slurmd did not start"
  fi
  local i
  for i in $(seq "$TIMEOUT"); do
    timeout 5 scontrol ping >/dev/null 2>&1 && break
    alive "$CTLD_PID" || fail 6 "slurmctld exited"
    sleep 1
  done
  timeout 5 scontrol ping >/dev/null 2>&1 || fail 6 "slurmctld does not answer scontrol ping after ${TIMEOUT} s"
  for i in $(seq "$TIMEOUT"); do
    cluster_ready && return 0
    case "$(node_state)" in
      # A node left down or drained by an earlier run (e.g. a killed slurmd): bring it back.
      down*|drain*|drng*|fail*) scontrol update NodeName="$(node_name)" State=RESUME >/dev/null 2>&1 ;;
    esac
    alive "$SLURMD_PID" || fail 6 "slurmd exited"
    sleep 1
  done
  fail 7 "node $(node_name) is '$(node_state)', not idle, after ${TIMEOUT} s ($(scontrol show node "$(node_name)" 2>/dev/null | grep -o 'Reason=.*'))"
}

test_job() {
  local out
  out=$(timeout "$TIMEOUT" srun -p debug -N 1 -n 1 -t 1 --job-name slurm_local_check echo srun-ok 2>&1)
  [ "$out" = srun-ok ] || fail 7 "a trivial srun job failed: $out"
  out=$(timeout "$TIMEOUT" sbatch -p debug -t 1 --wait --job-name slurm_local_check -o /dev/null --wrap true 2>&1) \
    || fail 7 "a trivial sbatch --wait job failed: $out"
}

start() {
  if [ "$(id -u)" != 0 ]; then
    if command -v sinfo >/dev/null 2>&1 && cluster_ready; then
      say "cluster up (node $(node_name) $(node_state)); not root, so its configuration is left as it is"
      return 0
    fi
    fail 3 "not root (uid $(id -u)): installing and starting munged, slurmctld and slurmd needs root"
  fi
  if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1 \
     || ! command -v sinfo >/dev/null 2>&1; then
    install_packages
  fi
  mkdir -p "$CONF_DIR" "$LOG_DIR"
  local new; new=$(mktemp)
  write_config "$new"
  if ! cmp -s "$new" "$CONF"; then
    say "writing $CONF"
    mv "$new" "$CONF"; chmod 0644 "$CONF"
    # A running cluster with another configuration (other CPUs, memory or hostname): restart it.
    stop_daemon "$SLURMD_PID" slurmd
    stop_daemon "$CTLD_PID" slurmctld
  else
    rm -f "$new"
  fi
  start_munge
  start_slurm
  test_job
  say "cluster up: node $(node_name) $(node_state) in partition debug ($(cpu_count) CPUs, $(memory_mb) MB); logs in $LOG_DIR"
}

case "${1:-start}" in
  start) start ;;
  status)
    if command -v sinfo >/dev/null 2>&1 && cluster_ready; then say "up: node $(node_name) $(node_state)"; exit 0; fi
    say "down (node state: '$(node_state)')"; exit 1 ;;
  stop)
    [ "$(id -u)" = 0 ] || fail 3 "not root"
    stop_daemon "$SLURMD_PID" slurmd; stop_daemon "$CTLD_PID" slurmctld; stop_daemon "$MUNGE_PID" munged ;;
  *) echo "usage: $0 [start|status|stop]" >&2; exit 2 ;;
esac
