#!/bin/bash
# Stop the test Redmine started by scripts/redmine_up.sh (by its pid file; nothing else is touched).
set -euo pipefail
PIDFILE=${REDMINE_PIDFILE:-/tmp/redmine-test.pid}
t() { echo "[$(date '+%H:%M:%S.%3N')] redmine: $*"; }
if [ ! -f "$PIDFILE" ]; then
  t "not running (no $PIDFILE)"
  exit 0
fi
pid=$(cat "$PIDFILE")
if ! kill -0 "$pid" 2>/dev/null; then
  t "not running (stale pid file, pid $pid)"
  rm -f "$PIDFILE"
  exit 0
fi
kill -TERM "$pid"
for _ in $(seq 1 80); do
  kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; t "stopped pid $pid"; exit 0; }
  sleep 0.25
done
t "pid $pid still alive after 20 s, sending KILL"
kill -KILL "$pid" 2>/dev/null || true
rm -f "$PIDFILE"
