#!/usr/bin/env bash
# Stop the cluster started by tests/slurm/start-cluster.sh: cancel jobs, then kill daemons by the PIDs
# saved in DIR/run/*.pid (listed in DIR/pids). Usage: stop-cluster.sh [DIR] [--purge]
set -uo pipefail
DIR=$(realpath -m "${1:-/tmp/vllm-mobo-slurm}")
PURGE=${2:-}
log() { echo "[stop-cluster] $*" >&2; }
export SLURM_CONF="$DIR/etc/slurm.conf"

pid_of() {  # pid_of NAME COMM -> prints pid if DIR/run/NAME.pid points to a live COMM
  local f="$DIR/run/$1.pid" pid
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  [ "$(ps -p "$pid" -o comm= 2>/dev/null)" = "$2" ] && echo "$pid"
}

# 1. cancel remaining jobs so no slurmstepd outlives slurmd
if pid_of slurmctld slurmctld >/dev/null; then
  jobs=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ')
  if [ -n "${jobs// /}" ]; then
    log "cancelling jobs: $jobs"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null
    for _ in $(seq 1 75); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.2; done
  fi
fi

# 2. kill daemons by saved PID, in dependency order
for n in slurmd slurmctld slurmdbd mariadbd munged; do
  pid=$(pid_of "$n" "$n") || continue
  log "stopping $n (pid $pid)"
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then log "$n did not exit, SIGKILL"; kill -KILL "$pid"; fi
  rm -f "$DIR/run/$n.pid"
done
rm -f "$DIR/pids"

# 3. undo the /etc/slurm/slurm.conf symlink if it is ours
if [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$DIR/etc/slurm.conf" ]; then
  rm -f /etc/slurm/slurm.conf
  [ -e /etc/slurm/slurm.conf.pre-cluster ] && mv /etc/slurm/slurm.conf.pre-cluster /etc/slurm/slurm.conf
fi
[ "$PURGE" = --purge ] && rm -rf "$DIR" && log "removed $DIR"
log "stopped"
