"""Directory sign-in without a directory: escaping, what is refused before anything is sent, a directory
that is down or silent (real sockets on loopback), and the ``admin.ldap`` settings' checks.

The sign-in itself, against a real OpenLDAP, is in tests/integration/test_ldap_directory.py.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from helpdesk_errors import ConfigError
from plugin.service.directory import (
    Directory,
    DirectoryUnavailable,
    bind_name,
    login_problem,
    user_filter,
)
from plugin.settings import LDAPSettings, Settings, load_settings

REPO = Path(__file__).resolve().parents[3]
PEOPLE = "ou=people,dc=example,dc=test"
GROUPS = dict(admin_group="cn=admins,ou=groups,dc=example,dc=test",
              analyst_group="cn=analysts,ou=groups,dc=example,dc=test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung directory)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    try:
        yield int(srv.getsockname()[1])
    finally:
        srv.close()


def directory(url: str, **over: object) -> Directory:
    fields: dict[str, object] = dict(enabled=True, url=url, bind_template=f"uid={{login}},{PEOPLE}", **GROUPS)
    fields.update(over)
    return Directory(LDAPSettings.model_validate(fields))


# -- escaping ------------------------------------------------------------------------------------

@pytest.mark.parametrize("login, expected", [
    ("alice", "uid=alice,ou=people,dc=example,dc=test"),
    ("lee,ann", r"uid=lee\,ann,ou=people,dc=example,dc=test"),
    ("x,ou=admins", r"uid=x\,ou\=admins,ou=people,dc=example,dc=test"),
    ("a+cn=b", r"uid=a\+cn\=b,ou=people,dc=example,dc=test"),
    ('"q"<>;\\', r'uid=\"q\"\<\>\;\\,ou=people,dc=example,dc=test'),
    ("#hash", r"uid=\#hash,ou=people,dc=example,dc=test"),
])
def test_login_is_one_rdn_value_in_a_dn_template(login, expected):
    assert bind_name(f"uid={{login}},{PEOPLE}", login) == expected


def test_upn_template_takes_the_login_as_typed():
    assert bind_name("{login}@corp.example", "alice") == "alice@corp.example"


@pytest.mark.parametrize("login, expected", [
    ("alice", "(uid=alice)"),
    ("*)(uid=*", r"(uid=\2a\29\28uid=\2a)"),
    ("al*", r"(uid=al\2a)"),
    ("a\\b", r"(uid=a\5cb)"),
])
def test_login_is_escaped_in_a_filter(login, expected):
    assert user_filter("(uid={login})", login) == expected


@pytest.mark.parametrize("login, problem", [
    ("", "empty"),
    ("a" * 257, "longer than 256"),
    ("ali\x00ce", "control"),
    ("alice\n", "control"),
    ("ali\u200bce", "invisible"),   # zero-width space
    ("\u202eecila", "invisible"),   # right-to-left override
])
def test_logins_refused_before_asking(login, problem):
    assert problem in (login_problem(login) or "")


def test_ordinary_logins_pass():
    for login in ("alice", "lee,ann", "Дмитрий", "*)(uid=*", "a" * 256):
        assert login_problem(login) is None


# -- refused before anything is sent ---------------------------------------------------------------

@pytest.mark.parametrize("login, password, reason", [
    ("alice", "", "empty_password"),
    ("", "pw", "bad_login"),
    ("   ", "pw", "bad_login"),
    ("ali\x00ce", "pw", "bad_login"),
    ("alice", "\ud800", "invalid_credentials"),  # a lone surrogate cannot be UTF-8
])
def test_refused_without_contacting_the_directory(login, password, reason):
    # Nothing listens on this port: had the directory been asked, DirectoryUnavailable would be raised.
    result = directory(f"ldap://127.0.0.1:{free_port()}").authenticate(login, password)
    assert not result.ok and result.role is None and result.reason == reason


# -- a directory that is down or hangs ---------------------------------------------------------------

def test_directory_down_is_a_clear_error_not_a_crash(caplog):
    port = free_port()
    d = directory(f"ldap://127.0.0.1:{port}", start_tls=False)
    with caplog.at_level(logging.WARNING, logger="plugin.service.directory"), \
            pytest.raises(DirectoryUnavailable, match=rf"cannot reach the directory at ldap://127.0.0.1:{port}.*refused"):
        d.authenticate("alice", "alice-secret-pw")
    assert "directory_unavailable" in caplog.text
    assert "alice-secret-pw" not in caplog.text


@pytest.mark.parametrize("start_tls", [False, True])
def test_silent_directory_times_out(silent_server, start_tls):
    d = directory(f"ldap://127.0.0.1:{silent_server}", start_tls=start_tls, timeout_s=1)
    with pytest.raises(DirectoryUnavailable, match="did not answer within 1 s"):
        d.authenticate("alice", "pw")


def test_check_reports_a_directory_that_is_down():
    results = directory(f"ldap://127.0.0.1:{free_port()}").check()
    assert [r.ok for r in results] == [False]
    assert "cannot reach" in results[0].detail


# -- settings ----------------------------------------------------------------------------------------

def ldap_problems(**fields: object) -> list[str]:
    return LDAPSettings.model_validate({"enabled": True, **fields}).problems()


def test_a_complete_configuration_has_no_problem():
    assert ldap_problems(url="ldaps://dc1.corp.example", bind_template=f"uid={{login}},{PEOPLE}", **GROUPS) == []
    assert ldap_problems(url="ldap://dc1.corp.example:3268", service_dn="cn=svc,dc=corp", service_password="pw",
                         user_search_base="dc=corp", membership="memberOf", **GROUPS) == []
    assert LDAPSettings(url="nonsense").problems() == []  # disabled: not checked


@pytest.mark.parametrize("fields, words", [
    (dict(url="http://dc1", bind_template="uid={login},dc=x"), "url must look like ldaps://"),
    (dict(url="ldap://dc1:99999", bind_template="uid={login},dc=x"), "url must look like"),
    (dict(url="ldap://dc1.corp.example", start_tls=False, bind_template="uid={login},dc=x"), "in clear"),
    (dict(url="ldaps://dc1", bind_template="uid=alice,dc=x"), "must contain {login}"),
    (dict(url="ldaps://dc1", bind_template="uid={login},,dc=x"), "bind_template is not a valid DN"),
    (dict(url="ldaps://dc1"), "user_search_base is required (there is no bind_template)"),
    (dict(url="ldaps://dc1", bind_template="{login}@corp.example"), "user_search_base is required (to find"),
    (dict(url="ldaps://dc1", user_search_base="dc=x", user_filter="uid={login}"), "user_filter must be"),
    (dict(url="ldaps://dc1", user_search_base="dc=x", service_dn="cn=svc,dc=x"), "service_password is required"),
    (dict(url="ldaps://dc1", user_search_base="dc=x", ca_file="/nonexistent/ca.pem"), "ca_file"),
])
def test_problems_name_the_key(fields, words):
    fields.setdefault("admin_group", GROUPS["admin_group"])
    assert any(words in p for p in ldap_problems(**fields)), ldap_problems(**fields)


def test_a_group_is_required_and_must_be_a_dn():
    assert any("admin_group or admin.ldap.analyst_group is required" in p
               for p in ldap_problems(url="ldaps://dc1", bind_template="uid={login},dc=x"))
    assert any("admin_group is not a valid DN" in p
               for p in ldap_problems(url="ldaps://dc1", bind_template="uid={login},dc=x", admin_group="admins"))


@pytest.mark.parametrize("url", ["ldap://127.0.0.1", "ldap://localhost:3389", "ldap://[::1]:389"])
def test_plain_ldap_to_loopback_is_allowed(url):
    assert ldap_problems(url=url, start_tls=False, bind_template="uid={login},dc=x", **GROUPS) == []


def test_plain_ldap_to_a_remote_host_only_when_allowed_knowingly():
    assert ldap_problems(url="ldap://dc1.corp.example", start_tls=False, allow_plaintext=True,
                         bind_template="uid={login},dc=x", **GROUPS) == []


def test_bad_directory_settings_fail_at_start_without_showing_the_service_password():
    env = {
        "HELPDESK_ASSIST_ADMIN__LDAP__ENABLED": "true",
        "HELPDESK_ASSIST_ADMIN__LDAP__URL": "http://dc1",
        "HELPDESK_ASSIST_ADMIN__LDAP__SERVICE_DN": "cn=svc,dc=corp",
        "HELPDESK_ASSIST_ADMIN__LDAP__SERVICE_PASSWORD": "hunter2-very-secret",
    }
    with pytest.raises(ConfigError) as e:
        load_settings(env=env)
    assert "admin.ldap.url" in str(e.value) and "admin.ldap.admin_group or" in str(e.value)
    assert "hunter2-very-secret" not in str(e.value)
    ok = load_settings(env={**env, "HELPDESK_ASSIST_ADMIN__LDAP__URL": "ldaps://dc1",
                            "HELPDESK_ASSIST_ADMIN__LDAP__USER_SEARCH_BASE": "dc=corp",
                            "HELPDESK_ASSIST_ADMIN__LDAP__ADMIN_GROUP": "cn=admins,dc=corp"})
    assert ok.admin.ldap.service_password.get_secret_value() == "hunter2-very-secret"
    assert "hunter2" not in repr(ok)


def test_throttle_settings_from_the_environment():
    s = load_settings(env={"HELPDESK_ASSIST_ADMIN__THROTTLE__ACCOUNT_MAX_FAILURES": "7",
                           "HELPDESK_ASSIST_ADMIN__THROTTLE__LOCK_S": "60"})
    assert s.admin.throttle.account_max_failures == 7 and s.admin.throttle.lock_s == 60
    with pytest.raises(ConfigError, match=r"admin\.throttle\.window_s"):
        load_settings(env={"HELPDESK_ASSIST_ADMIN__THROTTLE__WINDOW_S": "0"})


def test_example_config_documents_every_admin_key():
    text = (REPO / "config.example.yaml").read_text(encoding="utf-8")
    admin = Settings.model_fields["admin"].annotation
    for section, field in admin.model_fields.items():  # type: ignore[union-attr]
        assert re.search(rf"^  {section}:", text, re.M), f"config.example.yaml does not document admin.{section}"
        if not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            continue  # a plain value (admin.idle_timeout_min): documented by the line above
        for key in field.annotation.model_fields:
            assert re.search(rf"^    #? ?{key}:", text, re.M), f"config.example.yaml does not document admin.{section}.{key}"
    example = load_settings(REPO / "config.example.yaml", env={})
    assert example.admin.ldap.enabled is False and example.admin.throttle.account_max_failures == 5
