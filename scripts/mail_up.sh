#!/bin/bash
# Install (once) and start the test mail server on 127.0.0.1, as root:
# Postfix (SMTP 25) -> LMTP (24) -> Dovecot (Maildir, IMAP 143). No TLS; plain passwords.
#
#   sudo scripts/mail_up.sh            # install if needed, configure, start, wait for the greetings
#   sudo scripts/mail_down.sh          # stop both (by pid)
#
# Mailboxes (log in with the full address):
#   helpdesk@example.test / helpdesk-pass   the support mailbox the plugin reads
#   intake@example.test   / intake-pass     the helpdesk's intake address (where we forward)
#   sink@example.test     / sink-pass       catch-all: mail to ANY other address, any domain
# SMTP needs no AUTH from 127.0.0.0/8; AUTH PLAIN/LOGIN (Dovecot SASL) works with the same passwords.
# Empty every mailbox:  doveadm -c /etc/dovecot/helpdesk-test.conf expunge -u <user> mailbox '*' all
#
# Idempotent: when both greetings already answer it does nothing and exits 0; packages already
# installed are not fetched again. Daemons are started with stdio detached (they must never hold the
# caller's stdout/stderr open, or a piped caller hangs). Logs: /var/log/dovecot-test.log,
# /var/log/postfix.log, apt output in $MAIL_APT_LOG (/tmp/mail-apt.log).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
CONF=/etc/dovecot/helpdesk-test.conf
DOVECOT_LOG=/var/log/dovecot-test.log
APTLOG=${MAIL_APT_LOG:-/tmp/mail-apt.log}
t() { echo "[$(date '+%H:%M:%S.%3N')] mail: $*"; }

# Exit status 0 when every (port, greeting) pair answers, within $1 tenths of a second.
greetings() {
  python3 - "$1" <<'PY'
import socket, sys, time
tries = int(sys.argv[1])
for port, greet in ((143, b"* OK"), (25, b"220")):
    for _ in range(max(tries, 1)):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                if s.recv(100).startswith(greet):
                    break
        except OSError:
            pass
        if tries > 1:
            time.sleep(0.1)
    else:
        sys.exit(1)
PY
}

if greetings 1; then
  t "already running: IMAP 127.0.0.1:143 and SMTP 127.0.0.1:25 answer (nothing done)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "mail_up.sh must run as root (it installs packages and writes /etc/postfix, /etc/dovecot)" >&2
  exit 1
fi

installed() { dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -qx 'install ok installed'; }

if installed postfix && installed dovecot-imapd && installed dovecot-lmtpd; then
  t "packages already installed (no apt)"
else
  t "apt-get update"
  apt-get -o DPkg::Lock::Timeout=600 update -qq >"$APTLOG" 2>&1
  t "install postfix dovecot-imapd dovecot-lmtpd (log: $APTLOG)"
  debconf-set-selections <<'SEL'
postfix postfix/main_mailer_type select Local only
postfix postfix/mailname string mail.example.test
SEL
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    dovecot-imapd dovecot-lmtpd postfix >>"$APTLOG" 2>&1
fi

t "configure"
getent group vmail >/dev/null || groupadd -g 5000 vmail
id vmail >/dev/null 2>&1 || useradd -u 5000 -g vmail -d /var/mail/vhosts -M -s /usr/sbin/nologin vmail
install -d -o vmail -g vmail -m 0750 /var/mail/vhosts

cat >"$CONF" <<CONFEOF
# Standalone Dovecot 2.3 config for tests (written by scripts/mail_up.sh):  dovecot -c $CONF
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
log_path = $DOVECOT_LOG
mail_location = maildir:~/Maildir
# IDLE learns of new mail through inotify; where a busy machine has no inotify instance left, Dovecot falls
# back to looking every 30 s (the default), longer than a test waits: look every second instead.
mailbox_idle_check_interval = 1 secs
first_valid_uid = 5000
last_valid_uid = 5000
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u /etc/dovecot/test-users
}
userdb {
  driver = static
  args = uid=vmail gid=vmail home=/var/mail/vhosts/%d/%n
}
namespace inbox {
  inbox = yes
  separator = /
  mailbox Sent {
    special_use = \Sent
    auto = subscribe
  }
  mailbox Trash {
    special_use = \Trash
    auto = subscribe
  }
  mailbox Junk {
    special_use = \Junk
    auto = subscribe
  }
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = 143
  }
  inet_listener imaps {
    port = 0
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = 24
  }
}
service auth {
  unix_listener /var/spool/postfix/private/auth {
    mode = 0660
    user = postfix
    group = postfix
  }
}
protocol imap {
  mail_max_userip_connections = 100
}
protocol lmtp {
  postmaster_address = postmaster@example.test
}
CONFEOF
cat >/etc/dovecot/test-users <<'USERS'
helpdesk@example.test:{PLAIN}helpdesk-pass::::::
intake@example.test:{PLAIN}intake-pass::::::
sink@example.test:{PLAIN}sink-pass::::::
USERS
chown root:dovecot /etc/dovecot/test-users
chmod 0640 /etc/dovecot/test-users

cat >/etc/postfix/test_virtual_alias.regexp <<'MAP'
# helpdesk@, intake@ and sink@ are real mailboxes; any other address, any domain, is caught into sink@
/^helpdesk@example\.test$/  helpdesk@example.test
/^intake@example\.test$/    intake@example.test
/^sink@example\.test$/      sink@example.test
/./                         sink@example.test
MAP
# virtual_alias_domains must be empty: by default it is $virtual_alias_maps, and the catch-all /./
# would make example.test an alias domain too (every mail bounced "User unknown in virtual alias table").
postconf -e \
  'myhostname = mail.example.test' \
  'mydestination = localhost' \
  'inet_interfaces = loopback-only' \
  'inet_protocols = ipv4' \
  'mynetworks = 127.0.0.0/8' \
  'virtual_mailbox_domains = example.test' \
  'virtual_transport = lmtp:inet:127.0.0.1:24' \
  'virtual_alias_maps = regexp:/etc/postfix/test_virtual_alias.regexp' \
  'virtual_alias_domains =' \
  'smtpd_sasl_type = dovecot' \
  'smtpd_sasl_path = private/auth' \
  'smtpd_sasl_auth_enable = yes' \
  'smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated reject_unauth_destination' \
  'maillog_file = /var/log/postfix.log'
# Debian's master.cf chroots services; only the init script (not used here) fills the chroot.
postconf -F '*/*/chroot = n'
postfix check

t "start dovecot (first: it creates postfix's SASL socket), then postfix"
if [ -s /run/dovecot/master.pid ] && kill -0 "$(cat /run/dovecot/master.pid)" 2>/dev/null; then
  doveadm -c "$CONF" reload </dev/null >/dev/null 2>>"$DOVECOT_LOG"
else
  dovecot -c "$CONF" </dev/null >/dev/null 2>>"$DOVECOT_LOG"
fi
if postfix status >/dev/null 2>&1; then
  postfix reload </dev/null >/dev/null 2>>/var/log/postfix.log
else
  postfix start </dev/null >/dev/null 2>>/var/log/postfix.log
fi

t "wait for the greetings"
if ! greetings 100; then
  echo "mail server did not answer on 127.0.0.1:143 and :25 within 10 s; see $DOVECOT_LOG and /var/log/postfix.log" >&2
  exit 1
fi
t "up: dovecot pid $(cat /run/dovecot/master.pid), postfix pid $(tr -d ' ' </var/spool/postfix/pid/master.pid)"
