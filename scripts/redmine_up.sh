#!/bin/bash
# Install (once) and start a test Redmine 5.0 from Debian bookworm's packages on 127.0.0.1, as root.
#
#   sudo scripts/redmine_up.sh          # port from REDMINE_PORT (default 3000)
#   sudo scripts/redmine_down.sh        # stop it
#
# Idempotent: when something already answers on the port it does nothing and exits 0; packages
# already installed are not fetched again (no apt-get update). SQLite database created by the
# package (dbconfig-common), fixture from scripts/redmine_setup.rb (REST API on, API keys
# admin=a*40, requester=b*40, agent=c*40, project "helpdesk"). Server: thin, one process, stdio
# detached (it must never hold the caller's stdout/stderr open).
# Environment: REDMINE_PORT, REDMINE_LOG (/tmp/redmine-test.log), REDMINE_PIDFILE (/tmp/redmine-test.pid),
# REDMINE_APT_LOG (/tmp/redmine-apt.log), and the keys/passwords read by redmine_setup.rb.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PORT=${REDMINE_PORT:-3000}
HERE=$(cd "$(dirname "$0")" && pwd)
FIXTURE=${REDMINE_FIXTURE:-$HERE/redmine_setup.rb}
LOG=${REDMINE_LOG:-/tmp/redmine-test.log}
PIDFILE=${REDMINE_PIDFILE:-/tmp/redmine-test.pid}
APTLOG=${REDMINE_APT_LOG:-/tmp/redmine-apt.log}
URL="http://127.0.0.1:$PORT/"
t() { echo "[$(date '+%H:%M:%S.%3N')] redmine: $*"; }

if curl -sS -o /dev/null --max-time 5 "$URL" 2>/dev/null; then
  t "already running: something answers on $URL (nothing done)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "redmine_up.sh must run as root (it installs packages and writes /usr/share/redmine)" >&2
  exit 1
fi

installed() { dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -qx 'install ok installed'; }

# Bookworm's ruby3.1 3.1.7 ships bundler 2.3.27, which treats Debian-packaged gems that have no
# gems/NAME-VERSION directory as "deleted", so redmine's postinst `bundle install --local` fails
# ("Could not find rotp-6.2.0.gem for installation"). Creating the empty directories fixes it.
fix_gem_dirs() {
  ruby -rfileutils -e 'Gem::Specification.each { |s| next if s.default_gem? || File.directory?(s.full_gem_path); FileUtils.mkdir_p(s.full_gem_path) }'
}

if installed redmine && installed redmine-sqlite && installed thin; then
  t "packages already installed"
else
  t "apt-get update"
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  t "preseed dbconfig-common (SQLite) and install redmine redmine-sqlite thin (log: $APTLOG)"
  debconf-set-selections <<'SEL'
redmine redmine/instances/default/dbconfig-install boolean true
redmine redmine/instances/default/database-type select sqlite3
redmine redmine/instances/default/default-language select en
SEL
  if ! apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
        redmine redmine-sqlite thin >"$APTLOG" 2>&1; then
    t "apt-get failed (expected on bookworm's ruby 3.1.7: the postinst's bundler): fixing gem dirs, dpkg --configure -a"
    fix_gem_dirs
    dpkg --configure -a >>"$APTLOG" 2>&1
  fi
  if ! installed redmine; then
    echo "redmine is not installed correctly; see $APTLOG" >&2
    exit 1
  fi
fi

# The package's database.yml sets no SQLite busy timeout, so a write that meets another one (the worker's
# note while a test creates an issue) fails at once with "database is locked" and answers 500.
DBYML=/etc/redmine/default/database.yml
if [ -f "$DBYML" ] && ! grep -qE '^[[:space:]]+timeout:' "$DBYML"; then
  t "database.yml: SQLite busy timeout 10 s"
  sed -i -E 's/^([[:space:]]+)adapter: sqlite3$/&\n\1timeout: 10000/' "$DBYML"
fi

t "bundle install --local"
fix_gem_dirs   # always: a later ruby package install re-runs redmine's trigger, which can fail silently
cd /usr/share/redmine
bundle install --local --quiet >/dev/null 2>&1 || { echo "bundle install --local failed" >&2; exit 1; }

t "db:migrate (no-op unless the database was reset)"
SCHEMA=/dev/null bundle exec rake db:migrate >/dev/null

t "fixture $FIXTURE"
bundle exec rails runner -e production "$FIXTURE"

t "start thin on 127.0.0.1:$PORT (log: $LOG)"
if [ -f "$PIDFILE" ] && ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  rm -f "$PIDFILE"   # stale
fi
nohup bundle exec rails server -b 127.0.0.1 -p "$PORT" -e production -P "$PIDFILE" </dev/null >"$LOG" 2>&1 &
launcher=$!
for _ in $(seq 1 480); do
  if curl -fsS -o /dev/null --max-time 5 "$URL" 2>/dev/null; then
    t "up: $URL pid $(cat "$PIDFILE" 2>/dev/null || echo "$launcher")"
    exit 0
  fi
  if ! kill -0 "$launcher" 2>/dev/null; then
    echo "redmine server exited during start; last lines of $LOG:" >&2
    tail -n 30 "$LOG" >&2
    exit 1
  fi
  sleep 0.25
done
echo "redmine did not answer on $URL within 120 s; see $LOG" >&2
exit 1
