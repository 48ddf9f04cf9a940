"""Directory sign-in against the real OpenLDAP (Debian's slapd) that scripts/ldap_up.sh starts.

The same users sign in four ways (a DN template over StartTLS with groupOfNames; a service-account search
over LDAPS with memberOf; a DN template over plain loopback LDAP with groupOfUniqueNames; a DN template
with posixGroup memberUid), so each membership kind and each transport is exercised for real. The
directory's fixture (users, groups, passwords) is described at the top of scripts/ldap_up.sh.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from ldap3 import Connection, Server
from ldap3.protocol.sasl.sasl import sasl_prep
from ldap3.utils.dn import escape_rdn

from plugin.service.directory import Directory, DirectoryError
from plugin.settings import LDAPSettings, load_settings
from tests.integration.servers import require_server

pytestmark = pytest.mark.integration

SUFFIX = "dc=example,dc=test"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
CA = "/var/lib/helpdesk-ldap-test/tls/ca.crt"
SERVICE = dict(service_dn=f"cn=helpdesk-svc,ou=services,{SUFFIX}", service_password="svc-pass")
DMITRY_PASSWORD = "Пароль\u00a0ёж²-ü"  # U+00A0 no-break space; "²" and NBSP change under SASLprep
PASSWORDS = {"alice": "alice-pass", "bob": "bob-pass", "carol": "carol-pass", "erin": "erin-pass",
             "dmitry": DMITRY_PASSWORD, "lee,ann": "lee-pass"}

MODES: dict[str, dict[str, Any]] = {
    "dn-template, StartTLS, member": dict(
        url="ldap://127.0.0.1", start_tls=True, bind_template=f"uid={{login}},{PEOPLE}", membership="member",
        admin_group=f"cn=helpdesk-admins,{GROUPS}", analyst_group=f"cn=helpdesk-analysts,{GROUPS}"),
    "search as service account, LDAPS, memberOf": dict(
        url="ldaps://localhost", **SERVICE, user_search_base=PEOPLE, user_filter="(&(objectClass=inetOrgPerson)(uid={login}))",
        membership="memberOf",
        admin_group=f"cn=helpdesk-admins,{GROUPS}", analyst_group=f"cn=helpdesk-analysts,{GROUPS}"),
    "dn-template, plain loopback, uniqueMember": dict(
        url="ldap://127.0.0.1:389", start_tls=False, bind_template=f"uid={{login}},{PEOPLE}",
        membership="uniqueMember",
        admin_group=f"cn=helpdesk-admins-unique,{GROUPS}", analyst_group=f"cn=helpdesk-analysts-unique,{GROUPS}"),
    "dn-template + service account, StartTLS, memberUid": dict(
        url="ldap://localhost", **SERVICE, bind_template=f"uid={{login}},{PEOPLE}", membership="memberUid",
        admin_group=f"cn=helpdesk-admins-posix,{GROUPS}", analyst_group=f"cn=helpdesk-analysts-posix,{GROUPS}"),
}


@pytest.fixture(autouse=True)
def _directory_up() -> None:
    require_server("the test directory (OpenLDAP slapd)", "127.0.0.1", 389)


def settings(**fields: Any) -> LDAPSettings:
    """Through load_settings, so that every configuration used here also passes the start-up checks."""
    return load_settings(env={}, admin={"ldap": {"enabled": True, "ca_file": CA, **fields}}).admin.ldap


@pytest.fixture(params=list(MODES), ids=list(MODES))
def directory(request: pytest.FixtureRequest) -> Directory:
    return Directory(settings(**MODES[request.param]))


def user_dn(login: str) -> str:
    return f"uid={escape_rdn(login)},{PEOPLE}"


@pytest.mark.parametrize("login, role", [
    ("alice", "admin"),
    ("bob", "analyst"),
    ("erin", "admin"),           # in both groups: admin wins
    ("dmitry", "analyst"),       # non-ASCII password
    ("lee,ann", "analyst"),      # a comma in the login: escaped in the DN
])
def test_group_members_sign_in_with_their_role(directory, login, role):
    result = directory.authenticate(login, PASSWORDS[login])
    assert (result.ok, result.role, result.reason) == (True, role, "ok"), result.detail
    assert result.user_dn is not None
    # The directory's own spelling of the DN (lee,ann is uid=lee\2Cann in slapd's answer).
    assert result.user_dn.lower().replace("\\2c", "\\,") == user_dn(login).lower()


def test_login_case_does_not_matter_and_the_dn_comes_back_as_the_directory_spells_it(directory):
    result = directory.authenticate("  ALICE ", "alice-pass")
    assert result.role == "admin"
    assert result.user_dn == f"uid=alice,{PEOPLE}"


def test_user_in_neither_group_is_refused_even_with_the_right_password(directory):
    result = directory.authenticate("carol", "carol-pass")
    assert (result.ok, result.role, result.reason) == (False, None, "not_in_group")
    assert result.user_dn == f"uid=carol,{PEOPLE}"


@pytest.mark.parametrize("login, password", [
    ("alice", "bob-pass"),
    ("alice", "alice-pass "),
    ("alice", "ALICE-PASS"),
    ("bob", "alice-pass"),
    ("nobody", "alice-pass"),
])
def test_wrong_password_is_refused(directory, login, password):
    result = directory.authenticate(login, password)
    assert not result.ok
    assert result.reason in ("invalid_credentials", "unknown_user")
    assert password not in result.detail


def test_non_ascii_password_is_sent_as_typed(directory):
    # Meaningful only because SASLprep (what ldap3 does to a str password) changes this one:
    assert sasl_prep(DMITRY_PASSWORD) != DMITRY_PASSWORD
    assert directory.authenticate("dmitry", DMITRY_PASSWORD).role == "analyst"
    assert not directory.authenticate("dmitry", sasl_prep(DMITRY_PASSWORD)).ok


def test_empty_password_is_refused_although_the_server_accepts_anonymous_binds(directory):
    anonymous = Connection(Server("ldap://127.0.0.1:389"), read_only=True)
    try:
        assert anonymous.bind(), "the test directory is expected to accept anonymous binds"
    finally:
        anonymous.unbind()
    for login in ("alice", "carol", ""):
        result = directory.authenticate(login, "")
        assert (result.ok, result.reason) == (False, "empty_password")


@pytest.mark.parametrize("login", [
    "*)(uid=*",
    "*",
    "al*",                        # unescaped, (uid=al*) would find alice, then her password would work
    "alice)(uid=*",
    "*)(|(uid=*",
    "alice\\2a",
    "alice,ou=people,dc=example,dc=test",
    "alice+cn=x",
])
def test_injection_attempts_are_refused(directory, login):
    result = directory.authenticate(login, "alice-pass")
    assert not result.ok, f"{login!r} signed in as {result.role}"
    assert result.reason in ("invalid_credentials", "unknown_user", "bad_login"), result.detail


def test_unescaped_filter_would_have_let_al_star_in():
    """The counterpart that makes test_injection_attempts_are_refused meaningful: the raw filter matches alice."""
    conn = Connection(Server("ldap://127.0.0.1:389"), user=SERVICE["service_dn"], password=SERVICE["service_password"],
                      auto_bind=True, read_only=True)
    try:
        conn.search(PEOPLE, "(uid=al*)", attributes=["uid"])
        assert [e.entry_dn for e in conn.entries] == [f"uid=alice,{PEOPLE}"]
    finally:
        conn.unbind()


def test_no_password_reaches_the_log(caplog):
    d = Directory(settings(**MODES["search as service account, LDAPS, memberOf"]))
    with caplog.at_level(logging.DEBUG):
        for login, password in [("alice", "alice-pass"), ("alice", "wrong-secret-123"), ("carol", "carol-pass"),
                                ("dmitry", DMITRY_PASSWORD)]:
            d.authenticate(login, password)
    assert "directory_sign_in role=admin" in caplog.text
    for secret in ("alice-pass", "wrong-secret-123", "carol-pass", DMITRY_PASSWORD, "svc-pass"):
        assert secret not in caplog.text


# -- the directory or its settings are wrong: an error that says so, not a refusal --------------------

def test_untrusted_certificate_is_an_error_naming_ca_file():
    for mode in ("dn-template, StartTLS, member", "search as service account, LDAPS, memberOf"):
        d = Directory(settings(**{**MODES[mode], "ca_file": ""}))
        with pytest.raises(DirectoryError, match=r"TLS .* failed.*CERTIFICATE_VERIFY_FAILED.*admin.ldap.ca_file"):
            d.authenticate("alice", "alice-pass")


def test_verify_tls_off_connects_without_the_ca():
    d = Directory(settings(**{**MODES["search as service account, LDAPS, memberOf"], "ca_file": "", "verify_tls": False}))
    assert d.authenticate("alice", "alice-pass").role == "admin"


def test_wrong_service_password_is_an_error_for_the_admin(caplog):
    d = Directory(settings(**{**MODES["search as service account, LDAPS, memberOf"],
                              "service_password": "not-the-svc-secret"}))
    with caplog.at_level(logging.WARNING), pytest.raises(DirectoryError, match=r"service account cannot bind.*service_password"):
        d.authenticate("alice", "alice-pass")
    assert "not-the-svc-secret" not in caplog.text


def test_missing_group_is_an_error_naming_the_key():
    d = Directory(settings(**{**MODES["dn-template, StartTLS, member"],
                              "admin_group": f"cn=helpdesk-admns,{GROUPS}"}))
    with pytest.raises(DirectoryError, match=r"admin.ldap.admin_group \(cn=helpdesk-admns"):
        d.authenticate("bob", "bob-pass")


def test_missing_search_base_is_an_error_naming_the_key():
    d = Directory(settings(**{**MODES["search as service account, LDAPS, memberOf"],
                              "user_search_base": f"ou=peeple,{SUFFIX}"}))
    with pytest.raises(DirectoryError, match=r"admin.ldap.user_search_base"):
        d.authenticate("alice", "alice-pass")


def test_ambiguous_search_is_refused():
    d = Directory(settings(**{**MODES["search as service account, LDAPS, memberOf"],
                              "user_filter": "(|(uid={login})(uid=bob))"}))
    assert d.authenticate("alice", "alice-pass").reason == "ambiguous_user"


def test_check_confirms_a_working_configuration_and_names_a_wrong_group():
    good = Directory(settings(**MODES["search as service account, LDAPS, memberOf"])).check()
    assert all(r.ok for r in good), good
    assert {r.name for r in good} >= {"ldap", "ldap service account", "ldap admin_group", "ldap analyst_group"}
    bad = Directory(settings(**{**MODES["search as service account, LDAPS, memberOf"],
                                "analyst_group": f"cn=nope,{GROUPS}"})).check()
    failed = [r for r in bad if not r.ok]
    assert [r.name for r in failed] == ["ldap analyst_group"] and "cn=nope" in failed[0].detail
