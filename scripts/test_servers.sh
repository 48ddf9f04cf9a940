#!/usr/bin/env bash
# The real parts the integration tests need, installed and started by the project itself:
#   a Redmine 5 (Debian packages, SQLite, thin on 127.0.0.1:3000)     scripts/redmine_up.sh
#   Postfix + Dovecot (SMTP :25, IMAP :143, LMTP :24 on 127.0.0.1)      scripts/mail_up.sh
#   OpenLDAP (slapd: ldap :389 with StartTLS, ldaps :636 on 127.0.0.1)  scripts/ldap_up.sh
#   Chromium for the browser tests (Debian's chromium, headless)
# Usage: scripts/test_servers.sh up|down|status
# Needs root on Debian 12 (apt, daemons). Without root it says so and exits 0: the integration
# tests then skip, unless HELPDESK_TEST_REQUIRE_SERVERS=1 (CI), where they fail.
set -euo pipefail
cd "$(dirname "$0")/.."
cmd=${1:-up}
log_dir=${TEST_SERVERS_LOG_DIR:-/tmp/helpdesk-assist-test-servers}
mkdir -p "$log_dir"
t() { echo "[test-servers $(date +%H:%M:%S)] $*"; }

need_root() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    t "not root on a Debian machine: real servers not started (integration tests will skip)"
    exit 0
  fi
}

case "$cmd" in
  up)
    need_root
    export DEBIAN_FRONTEND=noninteractive
    if ! command -v chromium >/dev/null 2>&1; then
      t "installing chromium (browser tests)"
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends chromium >"$log_dir/chromium-apt.log" 2>&1
    fi
    t "mail server"
    scripts/mail_up.sh </dev/null >"$log_dir/mail.log" 2>&1 || { tail -30 "$log_dir/mail.log"; exit 1; }
    t "ldap directory"
    scripts/ldap_up.sh </dev/null >"$log_dir/ldap.log" 2>&1 || { tail -30 "$log_dir/ldap.log"; exit 1; }
    t "redmine"
    scripts/redmine_up.sh </dev/null >"$log_dir/redmine.log" 2>&1 || { tail -30 "$log_dir/redmine.log"; exit 1; }
    t "up: redmine http://127.0.0.1:3000, smtp 127.0.0.1:25, imap 127.0.0.1:143, ldap 127.0.0.1:389 (logs in $log_dir)"
    ;;
  down)
    scripts/redmine_down.sh || true
    scripts/mail_down.sh || true
    scripts/ldap_down.sh || true
    ;;
  status)
    for hp in 127.0.0.1:3000 127.0.0.1:25 127.0.0.1:143 127.0.0.1:389 127.0.0.1:636; do
      if (exec 3<>"/dev/tcp/${hp%:*}/${hp#*:}") 2>/dev/null; then echo "$hp up"; else echo "$hp down"; fi
    done
    ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
