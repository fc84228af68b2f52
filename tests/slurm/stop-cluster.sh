#!/usr/bin/env bash
# Stop the test cluster of tests/slurm/start-cluster.sh: each daemon by the pid it wrote, then wait.
# Usage: tests/slurm/stop-cluster.sh [--purge]   (--purge also deletes $NLBENCH_SLURM_DIR)
set -uo pipefail

DIR=${NLBENCH_SLURM_DIR:-/tmp/nlbench-slurm}
purge=0
[ "${1:-}" = --purge ] && purge=1

stop() {  # stop NAME PIDFILE
    local pidfile=$2 pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "stop-cluster.sh: $1 ($pid) still running after 10 s; sending SIGKILL" >&2
            kill -9 "$pid" 2>/dev/null
        fi
    fi
    rm -f "$pidfile"
}

stop slurmd "$DIR/slurmd.pid"
stop slurmctld "$DIR/slurmctld.pid"
stop slurmdbd "$DIR/slurmdbd.pid"
stop mariadbd "$DIR/mysql-run/mariadb.pid"
if [ -f "$DIR/munged.started-here" ]; then
    munged --stop >/dev/null 2>&1 || true
    rm -f "$DIR/munged.started-here"
fi
[ "$purge" = 1 ] && rm -rf "$DIR"
echo "SLURM test cluster stopped."
