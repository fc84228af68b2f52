#!/usr/bin/env bash
# Start a real single-node SLURM on this machine (no systemd): munged, MariaDB + slurmdbd (accounting),
# slurmctld and slurmd, all with state under one folder. Needs root and the Debian packages
#   apt-get install -y slurm-wlm munge
#   apt-get install -y --no-install-recommends slurmdbd mariadb-server     # only for accounting
# Usage: tests/slurm/start-cluster.sh [--no-accounting]
#   NLBENCH_SLURM_DIR  state folder (default /tmp/nlbench-slurm); the cluster's config is $DIR/slurm.conf,
#                      export SLURM_CONF=$DIR/slurm.conf to talk to it (the tests find it there by default).
#   --no-accounting    AccountingStorageType=accounting_storage/none: sacct is off, states come from
#                      `squeue -t all` (MinJobAge keeps finished jobs listed for a day).
# Stop it with tests/slurm/stop-cluster.sh. Tested with Slurm 22.05 and MariaDB 10.11 (Debian 12).
set -euo pipefail

accounting=1
for arg in "$@"; do
    case "$arg" in
        --no-accounting) accounting=0 ;;
        *) echo "start-cluster.sh: unknown option $arg (expected --no-accounting)" >&2; exit 2 ;;
    esac
done

DIR=${NLBENCH_SLURM_DIR:-/tmp/nlbench-slurm}
HOST=$(hostname -s)
CLUSTER=nlbench
MUNGE_SOCKET=/run/munge/munge.socket.2
DB_PORT=${NLBENCH_SLURM_DB_PORT:-3307}
for tool in slurmctld slurmd sinfo munged; do
    command -v "$tool" >/dev/null || { echo "start-cluster.sh: $tool not found; apt-get install -y slurm-wlm munge" >&2; exit 1; }
done
if [ "$(id -u)" -ne 0 ]; then
    echo "start-cluster.sh: must run as root (the daemons switch users and own /run/munge)" >&2
    exit 1
fi
export SLURM_CONF=$DIR/slurm.conf
if [ -f "$DIR/slurmctld.pid" ] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null \
    && sinfo -h -o %T >/dev/null 2>&1; then
    echo "SLURM cluster already running from $DIR (stop it with tests/slurm/stop-cluster.sh)."
    echo "export SLURM_CONF=$SLURM_CONF"
    exit 0
fi
mkdir -p "$DIR"/{state,spool,log}
chmod 755 "$DIR"

# --- munge: the package made the key; its runtime folder must belong to munge, and slurmdbd (a
# non-root reader of AccountingStoragePass) must be able to reach the socket, hence 755.
mkdir -p /run/munge
chown munge:munge /run/munge
chmod 755 /run/munge
if ! munge -n -S "$MUNGE_SOCKET" 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1; then
    runuser -u munge -- munged --socket="$MUNGE_SOCKET"
    touch "$DIR/munged.started-here"
    for _ in $(seq 50); do
        munge -n -S "$MUNGE_SOCKET" 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1 && break
        sleep 0.1
    done
fi

if [ "$accounting" = 1 ]; then
    accounting_lines="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePass=$MUNGE_SOCKET"
else
    accounting_lines="AccountingStorageType=accounting_storage/none"
fi

# --- slurm.conf: one node named after this host, with the hardware slurmd sees.
node=$(slurmd -C | head -n 1)
cat >"$DIR/slurm.conf.tmp" <<EOF
# Written by tests/slurm/start-cluster.sh: a single-node test cluster.
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
MpiDefault=none
ReturnToService=2
KillWait=5
# Finished jobs stay in squeue -t all for a day: the state source when accounting is off.
MinJobAge=86400
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
$accounting_lines
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
mv "$DIR/slurm.conf.tmp" "$DIR/slurm.conf"

# sacctmgr and slurmctld read slurm.conf to find slurmdbd, so the config comes first.
# --- accounting: a private MariaDB on 127.0.0.1:$DB_PORT (data under $DIR/mysql) and slurmdbd.
if [ "$accounting" = 1 ]; then
    for tool in slurmdbd mariadbd mariadb-install-db; do
        command -v "$tool" >/dev/null || { echo "start-cluster.sh: $tool not found; apt-get install -y --no-install-recommends slurmdbd mariadb-server (or use --no-accounting)" >&2; exit 1; }
    done
    # The server runs as mysql: its data, socket, pid and log live in folders it owns.
    mkdir -p "$DIR/mysql" "$DIR/mysql-run"
    chown mysql:mysql "$DIR/mysql" "$DIR/mysql-run"
    if [ ! -d "$DIR/mysql/mysql" ]; then
        mariadb-install-db --user=mysql --datadir="$DIR/mysql" --auth-root-authentication-method=socket \
            --skip-test-db >"$DIR/log/mariadb-install.log" 2>&1
    fi
    if ! mariadb --no-defaults -uroot --socket="$DIR/mysql-run/mysql.sock" -e "select 1" >/dev/null 2>&1; then
        mariadbd --no-defaults --user=mysql --datadir="$DIR/mysql" --socket="$DIR/mysql-run/mysql.sock" \
            --bind-address=127.0.0.1 --port="$DB_PORT" --pid-file="$DIR/mysql-run/mariadb.pid" \
            --log-error="$DIR/mysql-run/mariadb.log" --innodb-buffer-pool-size=64M >/dev/null 2>&1 &
        for _ in $(seq 100); do
            mariadb --no-defaults -uroot --socket="$DIR/mysql-run/mysql.sock" -e "select 1" >/dev/null 2>&1 && break
            sleep 0.1
        done
    fi
    if ! mariadb --no-defaults -uroot --socket="$DIR/mysql-run/mysql.sock" -e "select 1" >/dev/null 2>&1; then
        echo "start-cluster.sh: MariaDB did not answer in 10 s; its log:" >&2
        tail -n 20 "$DIR/mysql-run/mariadb.log" >&2
        exit 1
    fi
    mariadb --no-defaults -uroot --socket="$DIR/mysql-run/mysql.sock" <<'SQL'
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'nlbench';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL
    # slurmdbd refuses a config that others can read (it holds the database password).
    cat >"$DIR/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$DIR/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=nlbench
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$DIR/slurmdbd.conf"
    # slurmdbd reads slurmdbd.conf from the folder of $SLURM_CONF.
    if ! { [ -f "$DIR/slurmdbd.pid" ] && kill -0 "$(cat "$DIR/slurmdbd.pid")" 2>/dev/null; }; then
        slurmdbd
    fi
    for _ in $(seq 100); do
        sacctmgr -n list cluster >/dev/null 2>&1 && break
        sleep 0.1
    done
    sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
fi

slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 150); do
    state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null || true)
    if [ "$state" = idle ]; then
        echo "SLURM cluster '$CLUSTER' up: node $HOST idle (accounting: $([ "$accounting" = 1 ] && echo slurmdbd || echo none))."
        echo "export SLURM_CONF=$SLURM_CONF"
        exit 0
    fi
    sleep 0.2
done
echo "start-cluster.sh: node $HOST did not become idle in 30 s (state: ${state:-no answer}); logs in $DIR/log" >&2
tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
exit 1
