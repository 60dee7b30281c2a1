#!/usr/bin/env bash
# Start a real single-node SLURM cluster on localhost without systemd (Debian 12, run as root), for
# tests/test_slurm.py. Adapted from a recipe tested on this machine kind (Slurm 22.05, munge 0.5, MariaDB 10.11).
#
# Usage: tests/slurm/start-cluster.sh [DIR]        (DIR default: /tmp/vllm-mobo-slurm)
# Installs (apt, if missing): slurmctld slurmd slurm-client munge, and with ACCOUNTING=1 slurmdbd mariadb-server.
# Env knobs:
#   ACCOUNTING=1   1: MariaDB + slurmdbd (sacct works; snakemake slurm plugin defaults work)
#                  0: accounting_storage/none (sacct fails; use --slurm-status-command squeue)
#   FAKE_GPUS=0    >0: advertise N fake GPUs (gres.conf, each File a copy of /dev/null) so gpu=N jobs run
#                  and get CUDA_VISIBLE_DEVICES
#   CLUSTER_NAME=testcluster  PARTITION=debug
#   SLURMCTLD_PORT=6817 SLURMD_PORT=6818 SLURMDBD_PORT=6819 MYSQL_PORT=3307
#   WAIT_S=60      seconds to wait for each daemon / for the node to become idle
#
# Idempotent: installs missing packages, (re)writes configs under DIR, starts only daemons
# that are not already running (checked via DIR/run/*.pid), waits until `sinfo` shows the
# node idle, writes "name pid" lines to DIR/pids and `export SLURM_CONF=...` to DIR/env.sh.
#
# Side effects outside DIR (needed, see report):
#   /etc/slurm/slurm.conf -> symlink to DIR/etc/slurm.conf  (the slurm-jobstep plugin strips
#       SLURM_CONF from the environment of the nested `srun`, so the default path must work)
#   /run/munge/munge.socket.2 (munged on the default socket; sacctmgr/slurmdbd connections
#       do not honour a custom AuthInfo socket in Slurm 22.05)
set -euo pipefail

DIR=$(realpath -m "${1:-/tmp/vllm-mobo-slurm}")
ACCOUNTING=${ACCOUNTING:-1}
FAKE_GPUS=${FAKE_GPUS:-0}
CLUSTER_NAME=${CLUSTER_NAME:-testcluster}
PARTITION=${PARTITION:-debug}
SLURMCTLD_PORT=${SLURMCTLD_PORT:-6817}
SLURMD_PORT=${SLURMD_PORT:-6818}
SLURMDBD_PORT=${SLURMDBD_PORT:-6819}
MYSQL_PORT=${MYSQL_PORT:-3307}
WAIT_S=${WAIT_S:-60}
DB_PASS=slurmpw

log() { echo "[start-cluster] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"

# ---------------------------------------------------------------- packages
install_pkgs() {
  local pkgs=(slurmctld slurmd slurm-client munge) missing=() p
  [ "$ACCOUNTING" = 1 ] && pkgs+=(slurmdbd mariadb-server)
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing: ${missing[*]}"
  local tmp_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then   # keep postinst scripts from starting services
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; tmp_policy=1
  fi
  command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} by hand"
  # wait (up to 10 min) for another apt/dpkg run on the machine instead of failing on its lock
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
  [ "$tmp_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  return 0
}
install_pkgs

mkdir -p "$DIR"/{etc,run,log,spool/ctld,spool/d,munge}
chmod 700 "$DIR/munge"
export SLURM_CONF="$DIR/etc/slurm.conf"
HOST=$(hostname -s)

# ---------------------------------------------------------------- helpers
# alive NAME COMM: pidfile DIR/run/NAME.pid exists and its pid runs a process named COMM
alive() {
  local f="$DIR/run/$1.pid" pid
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  [ "$(ps -p "$pid" -o comm= 2>/dev/null)" = "$2" ]
}
# launch NAME COMM CMD...: start CMD in its own session unless already alive; wait for pidfile
launch() {
  local name=$1 comm=$2; shift 2
  if alive "$name" "$comm"; then log "$name already running (pid $(cat "$DIR/run/$name.pid"))"; return 0; fi
  rm -f "$DIR/run/$name.pid"
  setsid "$@" > "$DIR/log/$name.out" 2>&1 < /dev/null &
  local bgpid=$! i
  for ((i = 0; i < WAIT_S * 5; i++)); do
    alive "$name" "$comm" && { log "$name started (pid $(cat "$DIR/run/$name.pid"))"; return 0; }
    kill -0 "$bgpid" 2>/dev/null || break
    sleep 0.2
  done
  tail -20 "$DIR/log/$name.out" >&2 || true
  die "$name did not start (see $DIR/log/$name.out)"
}
wait_for() {  # wait_for DESC CMD...
  local desc=$1 i; shift
  for ((i = 0; i < WAIT_S * 5; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  die "timeout waiting for $desc"
}

# ---------------------------------------------------------------- munge
[ -s "$DIR/munge/munge.key" ] || mungekey -c -k "$DIR/munge/munge.key"
chmod 600 "$DIR/munge/munge.key"
mkdir -p /run/munge && chmod 755 /run/munge
if ! alive munged munged && munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "a munged not started by this script already answers on /run/munge; reusing it"
else
  launch munged munged munged -F --force --key-file="$DIR/munge/munge.key" \
    --log-file="$DIR/log/munged.log" --pid-file="$DIR/run/munged.pid" --seed-file="$DIR/munge/munged.seed"
  wait_for "munge" bash -c 'munge -n | unmunge'
fi

# ---------------------------------------------------------------- configs
MEM=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
NODE_HW=$(slurmd -C | sed -n '1{s/^NodeName=[^ ]* //;s/ RealMemory=[0-9]*//;p}')
GRES_NODE=""; GRES_GLOBAL=""
rm -f "$DIR/etc/gres.conf"
if [ "$FAKE_GPUS" -gt 0 ]; then
  GRES_NODE="Gres=gpu:$FAKE_GPUS"
  GRES_GLOBAL="GresTypes=gpu"
  [ "$ACCOUNTING" = 1 ] && GRES_GLOBAL+=$'\nAccountingStorageTRES=gres/gpu'  # needs slurmdbd
  # Slurm refuses two GPUs with the same File ("duplicate device file name"), so each fake GPU is its own
  # copy of /dev/null (character device 1:3) under DIR/dev.
  mkdir -p "$DIR/dev"
  for ((i = 0; i < FAKE_GPUS; i++)); do
    [ -c "$DIR/dev/fakegpu$i" ] || mknod -m 666 "$DIR/dev/fakegpu$i" c 1 3
    echo "NodeName=$HOST Name=gpu File=$DIR/dev/fakegpu$i"
  done > "$DIR/etc/gres.conf"
fi
if [ "$ACCOUNTING" = 1 ]; then
  ACCT=$'AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=localhost\n'"AccountingStoragePort=$SLURMDBD_PORT"$'\nJobAcctGatherType=jobacct_gather/linux\nJobAcctGatherFrequency=30'
else
  ACCT=$'AccountingStorageType=accounting_storage/none\nJobAcctGatherType=jobacct_gather/none'
fi
cat > "$DIR/etc/slurm.conf" <<EOF
# generated by start-cluster.sh
ClusterName=$CLUSTER_NAME
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$SLURMCTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge=300
JobCompType=jobcomp/none
$ACCT
# sacct shows the job's --comment (the Snakemake plugin puts the rule and wildcards there)
AccountingStoreFlags=job_comment
$GRES_GLOBAL
NodeName=$HOST NodeAddr=127.0.0.1 $NODE_HW RealMemory=$MEM $GRES_NODE State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
echo "export SLURM_CONF=$DIR/etc/slurm.conf" > "$DIR/env.sh"

# nested srun inside jobs (slurm-jobstep plugin) drops SLURM_CONF -> default path must work
if [ -e /etc/slurm/slurm.conf ] && [ ! -L /etc/slurm/slurm.conf ] && [ ! -e /etc/slurm/slurm.conf.pre-cluster ]; then
  mv /etc/slurm/slurm.conf /etc/slurm/slurm.conf.pre-cluster
fi
mkdir -p /etc/slurm && ln -sfn "$DIR/etc/slurm.conf" /etc/slurm/slurm.conf

# ---------------------------------------------------------------- accounting
if [ "$ACCOUNTING" = 1 ]; then
  SOCK="$DIR/run/mysqld.sock"
  if [ ! -d "$DIR/mysql/mysql" ]; then
    mkdir -p "$DIR/mysql"
    mariadb-install-db --no-defaults --datadir="$DIR/mysql" --user=root \
      --auth-root-authentication-method=socket --skip-test-db > "$DIR/log/mariadb-install.log" 2>&1
  fi
  launch mariadbd mariadbd mariadbd --no-defaults --datadir="$DIR/mysql" --user=root --socket="$SOCK" \
    --port="$MYSQL_PORT" --bind-address=127.0.0.1 --pid-file="$DIR/run/mariadbd.pid" \
    --log-error="$DIR/log/mariadbd.err" --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900
  wait_for "mariadb" mariadb-admin --no-defaults -S "$SOCK" -u root ping
  mariadb --no-defaults -S "$SOCK" -u root -e "
    CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
  # slurmdbd reads slurmdbd.conf from dirname($SLURM_CONF); it must be mode 600
  cat > "$DIR/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$SLURMDBD_PORT
SlurmUser=root
DebugLevel=info
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MYSQL_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$DIR/etc/slurmdbd.conf"
  launch slurmdbd slurmdbd slurmdbd -D
  wait_for "slurmdbd" sacctmgr -n list cluster
  if ! sacctmgr -n -P list cluster format=cluster | grep -x "$CLUSTER_NAME" >/dev/null; then
    sacctmgr -i add cluster "$CLUSTER_NAME" >/dev/null
  fi
fi

# ---------------------------------------------------------------- slurmctld / slurmd
launch slurmctld slurmctld slurmctld -D
wait_for "slurmctld" scontrol ping
launch slurmd slurmd slurmd -D
node_idle() { [ "$(sinfo -h -n "$HOST" -o %t 2>/dev/null)" = idle ]; }
for ((i = 0; i < WAIT_S * 5; i++)); do
  node_idle && break
  case "$(sinfo -h -n "$HOST" -o %t 2>/dev/null)" in
    drain*|down*|inval*) [ $((i % 25)) = 10 ] && scontrol update nodename="$HOST" state=resume 2>/dev/null || true ;;
  esac
  sleep 0.2
done
node_idle || { sinfo -R >&2; die "node $HOST not idle"; }

: > "$DIR/pids"
for n in munged mariadbd slurmdbd slurmctld slurmd; do
  [ -s "$DIR/run/$n.pid" ] && echo "$n $(cat "$DIR/run/$n.pid")" >> "$DIR/pids"
done
log "cluster up: $(sinfo -h -o '%P %a %D %t %N %G')"
log "PIDs in $DIR/pids; use: source $DIR/env.sh"
[ "$ACCOUNTING" = 1 ] || log "no accounting: run snakemake with --slurm-status-command squeue"
