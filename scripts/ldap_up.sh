#!/bin/bash
# Install (once) and start the test directory: Debian's OpenLDAP (slapd 2.5) on 127.0.0.1, as root.
#
#   sudo scripts/ldap_up.sh            # install if needed, build the directory, start, wait for a bind
#   sudo scripts/ldap_down.sh          # stop it (by pid)
#
# Listens on 127.0.0.1 only:  ldap://127.0.0.1:389 (StartTLS offered)  and  ldaps://127.0.0.1:636.
# TLS certificate: signed by a throw-away CA made here, for IP 127.0.0.1 and DNS localhost; clients
# verify with  $LDAP_TEST_DIR/tls/ca.crt  (world-readable).
#
# Suffix dc=example,dc=test. Every password below is a test fixture, nothing else:
#   cn=admin,dc=example,dc=test                    ldap-admin-pass   the directory's root (rootdn)
#   cn=helpdesk-svc,ou=services,dc=example,dc=test svc-pass          service account (search mode)
#   uid=alice,ou=people,...    alice-pass    in the admin group
#   uid=bob,ou=people,...      bob-pass      in the analyst group
#   uid=carol,ou=people,...    carol-pass    in neither group
#   uid=dmitry,ou=people,...   "Пароль<NBSP>ёж²-ü" (non-ASCII; U+00A0 between the words; "²" and the
#                              NBSP are changed by SASLprep, so a client must send the bytes as typed)
#                              in the analyst group
#   uid=erin,ou=people,...     erin-pass     in both groups
#   uid=lee\,ann,ou=people,... lee-pass      login "lee,ann" (a comma: the DN must be escaped); analyst
# Groups under ou=groups, the same members three ways (the membership attributes directories use):
#   cn=helpdesk-admins, cn=helpdesk-analysts                  groupOfNames, "member" (+ memberOf overlay:
#                                                             users carry "memberOf", as in Active Directory)
#   cn=helpdesk-admins-unique, cn=helpdesk-analysts-unique    groupOfUniqueNames, "uniqueMember"
#   cn=helpdesk-admins-posix, cn=helpdesk-analysts-posix      posixGroup, "memberUid" (the uid value)
# Access: authenticated users read everything but passwords; anonymous clients may only bind.
#
# Active Directory differs (not reproducible with slapd): users bind as "login@corp.example" (UPN) or
# "CORP\login" as well as by DN; groups are "group" objects with "member"; users carry "memberOf"
# (direct groups only; nested groups need the matching rule 1.2.840.113556.1.4.1941); the login is
# "sAMAccountName"; AD accepts a bind with a DN and an EMPTY password as anonymous (RFC 4513 5.1.2).
#
# Idempotent: when a fixture user can already bind, it does nothing and exits 0. Otherwise it installs
# slapd + ldap-utils if missing (debconf preseed: no default database; this directory has its own
# cn=config under $LDAP_TEST_DIR and never touches /etc/ldap/slapd.d), rebuilds the directory from
# scratch (so every start begins from the same entries) and starts slapd with stdio detached.
# Logs: $TEST_SERVERS_LOG_DIR (default /tmp/helpdesk-assist-test-servers): slapd.log, ldap-apt.log.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
DIR=${LDAP_TEST_DIR:-/var/lib/helpdesk-ldap-test}
LOG_DIR=${TEST_SERVERS_LOG_DIR:-/tmp/helpdesk-assist-test-servers}
PORT=389
LDAPS_PORT=636
SUFFIX=dc=example,dc=test
ROOT_DN=cn=admin,$SUFFIX
ROOT_PW=ldap-admin-pass
SOCKET=$DIR/run/ldapi
SOCKET_URL=ldapi://$(printf '%s' "$SOCKET" | sed 's|/|%2F|g')
PIDFILE=$DIR/run/slapd.pid   # in a folder slapd owns: it writes the file after dropping root
LOG=$LOG_DIR/slapd.log
APTLOG=$LOG_DIR/ldap-apt.log
mkdir -p "$LOG_DIR"
t() { echo "[$(date '+%H:%M:%S.%3N')] ldap: $*"; }

# Exit status 0 when the fixture user alice can bind (a bind, not an open port: that is what tests need).
bind_works() {
  command -v ldapwhoami >/dev/null 2>&1 &&
    ldapwhoami -x -o nettimeout=2 -H "ldap://127.0.0.1:$PORT" -D "uid=alice,ou=people,$SUFFIX" -w alice-pass \
      >/dev/null 2>&1
}

if bind_works; then
  t "already running: uid=alice binds on ldap://127.0.0.1:$PORT (nothing done)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "ldap_up.sh must run as root (it installs packages and starts slapd on port $PORT)" >&2
  exit 1
fi

installed() { dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -qx 'install ok installed'; }

if installed slapd && installed ldap-utils; then
  t "packages already installed (no apt)"
else
  t "apt-get update"
  apt-get -o DPkg::Lock::Timeout=600 update -qq >"$APTLOG" 2>&1
  t "install slapd ldap-utils (log: $APTLOG)"
  # No default database: ours lives under $DIR with its own cn=config. The password questions are
  # answered anyway so that nothing can prompt.
  debconf-set-selections <<'SEL'
slapd slapd/no_configuration boolean true
slapd slapd/password1 password unused-default-config
slapd slapd/password2 password unused-default-config
SEL
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends slapd ldap-utils openssl \
    >>"$APTLOG" 2>&1
fi

# A slapd of ours still running but not answering our bind (an old fixture, a hang): stop it first.
if [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  t "a slapd of ours (pid $(cat "$PIDFILE")) runs but alice cannot bind: stopping it to rebuild"
  "$(dirname "$0")/ldap_down.sh"
fi
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "port 127.0.0.1:$PORT is taken by another program (not our test directory); stop it first" >&2
  exit 1
fi

t "TLS certificate (test CA, 127.0.0.1 + localhost)"
install -d -m 0755 "$DIR" "$DIR/tls"
if ! openssl x509 -checkend 86400 -noout -in "$DIR/tls/server.crt" >/dev/null 2>&1; then
  (
    cd "$DIR/tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.crt \
      -subj "/CN=helpdesk-assist test LDAP CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" \
      "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid" >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile server.ext -out server.crt 2>/dev/null
    rm -f server.csr server.ext ca.srl
  )
fi
chmod 0644 "$DIR/tls/ca.crt" "$DIR/tls/server.crt"
chmod 0600 "$DIR/tls/ca.key"
chown root:openldap "$DIR/tls/server.key"
chmod 0640 "$DIR/tls/server.key"

t "build the directory from scratch under $DIR"
rm -rf "$DIR/slapd.d" "$DIR/data"
install -d -o openldap -g openldap -m 0750 "$DIR/slapd.d" "$DIR/data"
install -d -o openldap -g openldap -m 0755 "$DIR/run"
ROOT_HASH=$(slappasswd -h '{SSHA}' -s "$ROOT_PW")
# Indexes on the attributes the sign-in filters on, so that slapd does not log "not indexed".
cat >"$DIR/config.ldif" <<LDIF
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: $PIDFILE
olcArgsFile: $DIR/run/slapd.args
olcLogLevel: stats
olcTLSCACertificateFile: $DIR/tls/ca.crt
olcTLSCertificateFile: $DIR/tls/server.crt
olcTLSCertificateKeyFile: $DIR/tls/server.key

dn: cn=module{0},cn=config
objectClass: olcModuleList
cn: module{0}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb
olcModuleLoad: memberof

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif
include: file:///etc/ldap/schema/cosine.ldif
include: file:///etc/ldap/schema/nis.ldif
include: file:///etc/ldap/schema/inetorgperson.ldif

dn: olcDatabase={-1}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {-1}frontend
olcSizeLimit: 500

dn: olcDatabase={0}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {0}config
olcAccess: {0}to * by dn.exact=gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth manage by * none

dn: olcDatabase={1}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {1}mdb
olcDbDirectory: $DIR/data
olcSuffix: $SUFFIX
olcRootDN: $ROOT_DN
olcRootPW: $ROOT_HASH
olcDbIndex: objectClass eq
olcDbIndex: uid eq
olcDbIndex: member,uniqueMember eq
olcDbIndex: memberUid eq
olcDbIndex: memberOf eq
olcAccess: {0}to attrs=userPassword by self write by anonymous auth by * none
olcAccess: {1}to * by users read by * none

dn: olcOverlay={0}memberof,olcDatabase={1}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcMemberOf
olcOverlay: {0}memberof
olcMemberOfRefInt: TRUE
olcMemberOfGroupOC: groupOfNames
olcMemberOfMemberAD: member
olcMemberOfMemberOfAD: memberOf
LDIF
slapadd -n 0 -F "$DIR/slapd.d" -l "$DIR/config.ldif" >/dev/null
chown -R openldap:openldap "$DIR/slapd.d" "$DIR/data"

t "start slapd on 127.0.0.1:$PORT and :$LDAPS_PORT (log: $LOG)"
# -d stats: stay in the foreground and log to stderr (there is no syslog here), into $LOG.
rm -f "$PIDFILE"
nohup slapd -d stats -F "$DIR/slapd.d" -u openldap -g openldap \
  -h "ldap://127.0.0.1:$PORT/ ldaps://127.0.0.1:$LDAPS_PORT/ $SOCKET_URL" </dev/null >>"$LOG" 2>&1 &
launcher=$!
for _ in $(seq 1 100); do
  ldapwhoami -x -o nettimeout=1 -H "$SOCKET_URL" -D "$ROOT_DN" -w "$ROOT_PW" >/dev/null 2>&1 && break
  kill -0 "$launcher" 2>/dev/null || { tail -20 "$LOG" >&2; echo "slapd exited; see $LOG" >&2; exit 1; }
  sleep 0.1
done
# slapd writes its pid file itself; record the launcher's pid in case it has not yet.
[ -s "$PIDFILE" ] || echo "$launcher" >"$PIDFILE"

t "load the fixture entries (online, so that the memberof overlay fills memberOf)"
p() { slappasswd -h '{SSHA}' -s "$1"; }
DMITRY_PW=$(printf 'Пароль\xc2\xa0ёж²-ü')
P="ou=people,$SUFFIX"
G="ou=groups,$SUFFIX"
ldapadd -x -H "$SOCKET_URL" -D "$ROOT_DN" -w "$ROOT_PW" >/dev/null <<LDIF
dn: $SUFFIX
objectClass: dcObject
objectClass: organization
dc: example
o: Example Test

dn: $P
objectClass: organizationalUnit
ou: people

dn: ou=groups,$SUFFIX
objectClass: organizationalUnit
ou: groups

dn: ou=services,$SUFFIX
objectClass: organizationalUnit
ou: services

dn: cn=helpdesk-svc,ou=services,$SUFFIX
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: helpdesk-svc
description: service account helpdesk-assist searches with
userPassword: $(p svc-pass)

dn: uid=alice,$P
objectClass: inetOrgPerson
uid: alice
cn: Alice Admin
sn: Admin
mail: alice@example.test
userPassword: $(p alice-pass)

dn: uid=bob,$P
objectClass: inetOrgPerson
uid: bob
cn: Bob Analyst
sn: Analyst
mail: bob@example.test
userPassword: $(p bob-pass)

dn: uid=carol,$P
objectClass: inetOrgPerson
uid: carol
cn: Carol Nogroup
sn: Nogroup
mail: carol@example.test
userPassword: $(p carol-pass)

dn: uid=dmitry,$P
objectClass: inetOrgPerson
uid: dmitry
cn:: $(printf 'Дмитрий Аналитик' | base64 -w0)
sn:: $(printf 'Аналитик' | base64 -w0)
mail: dmitry@example.test
userPassword: $(p "$DMITRY_PW")

dn: uid=erin,$P
objectClass: inetOrgPerson
uid: erin
cn: Erin Both
sn: Both
mail: erin@example.test
userPassword: $(p erin-pass)

dn: uid=lee\\,ann,$P
objectClass: inetOrgPerson
uid: lee,ann
cn: Ann Lee
sn: Lee
userPassword: $(p lee-pass)

dn: cn=helpdesk-admins,$G
objectClass: groupOfNames
cn: helpdesk-admins
member: uid=alice,$P
member: uid=erin,$P

dn: cn=helpdesk-analysts,$G
objectClass: groupOfNames
cn: helpdesk-analysts
member: uid=bob,$P
member: uid=dmitry,$P
member: uid=erin,$P
member: uid=lee\\,ann,$P

dn: cn=helpdesk-admins-unique,$G
objectClass: groupOfUniqueNames
cn: helpdesk-admins-unique
uniqueMember: uid=alice,$P
uniqueMember: uid=erin,$P

dn: cn=helpdesk-analysts-unique,$G
objectClass: groupOfUniqueNames
cn: helpdesk-analysts-unique
uniqueMember: uid=bob,$P
uniqueMember: uid=dmitry,$P
uniqueMember: uid=erin,$P
uniqueMember: uid=lee\\,ann,$P

dn: cn=helpdesk-admins-posix,$G
objectClass: posixGroup
cn: helpdesk-admins-posix
gidNumber: 10001
memberUid: alice
memberUid: erin

dn: cn=helpdesk-analysts-posix,$G
objectClass: posixGroup
cn: helpdesk-analysts-posix
gidNumber: 10002
memberUid: bob
memberUid: dmitry
memberUid: erin
memberUid: lee,ann
LDIF

t "wait for a bind over TCP"
for _ in $(seq 1 50); do
  bind_works && break
  sleep 0.1
done
if ! bind_works; then
  echo "slapd started but uid=alice cannot bind on ldap://127.0.0.1:$PORT; see $LOG" >&2
  exit 1
fi
t "up: slapd pid $(cat "$PIDFILE"), ldap://127.0.0.1:$PORT (StartTLS) and ldaps://127.0.0.1:$LDAPS_PORT, CA $DIR/tls/ca.crt"
