#!/bin/bash
# Stop the test mail server started by scripts/mail_up.sh: Dovecot and Postfix, each by its pid file
# (nothing else is touched). Mail and configuration stay; mail_up.sh starts them again.
set -euo pipefail
t() { echo "[$(date '+%H:%M:%S.%3N')] mail: $*"; }

stop_pid() {  # name pidfile
  local name=$1 pidfile=$2 pid
  if [ ! -s "$pidfile" ]; then
    t "$name not running (no $pidfile)"
    return 0
  fi
  pid=$(tr -d ' \n' <"$pidfile")   # postfix pads its pid with spaces
  if ! kill -0 "$pid" 2>/dev/null; then
    t "$name not running (stale pid file, pid $pid)"
    return 0
  fi
  kill -TERM "$pid"
  for _ in $(seq 1 80); do
    # a killed master may stay a zombie until PID 1 reaps it: treat "Z" as stopped
    state=$(ps -o stat= -p "$pid" 2>/dev/null || true)
    if [ -z "$state" ] || [ "${state:0:1}" = Z ]; then
      t "$name stopped (pid $pid)"
      return 0
    fi
    sleep 0.25
  done
  t "$name pid $pid still alive after 20 s, sending KILL"
  kill -KILL "$pid" 2>/dev/null || true
}

stop_pid postfix /var/spool/postfix/pid/master.pid
stop_pid dovecot /run/dovecot/master.pid
