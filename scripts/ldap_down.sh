#!/bin/bash
# Stop the test directory started by scripts/ldap_up.sh, by its pid file (nothing else is touched).
# The entries are rebuilt from scratch by the next ldap_up.sh; the packages stay installed.
set -euo pipefail
DIR=${LDAP_TEST_DIR:-/var/lib/helpdesk-ldap-test}
PIDFILE=$DIR/run/slapd.pid
t() { echo "[$(date '+%H:%M:%S.%3N')] ldap: $*"; }
if [ ! -s "$PIDFILE" ]; then
  t "not running (no $PIDFILE)"
  exit 0
fi
pid=$(tr -d ' \n' <"$PIDFILE")
if ! kill -0 "$pid" 2>/dev/null; then
  t "not running (stale pid file, pid $pid)"
  rm -f "$PIDFILE"
  exit 0
fi
kill -TERM "$pid"
for _ in $(seq 1 80); do
  # a killed slapd may stay a zombie until PID 1 reaps it: treat "Z" as stopped
  state=$(ps -o stat= -p "$pid" 2>/dev/null || true)
  if [ -z "$state" ] || [ "${state:0:1}" = Z ]; then
    rm -f "$PIDFILE"
    t "stopped (pid $pid)"
    exit 0
  fi
  sleep 0.25
done
t "pid $pid still alive after 20 s, sending KILL"
kill -KILL "$pid" 2>/dev/null || true
rm -f "$PIDFILE"
