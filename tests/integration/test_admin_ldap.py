"""Signing in to the admin console with the real OpenLDAP (Debian's slapd, scripts/ldap_up.sh): a member
of the admin group becomes an admin, of the analyst group an analyst, anyone else is refused even with the
right password; a directory that cannot be reached says so (not "wrong password") and locks nobody."""

from __future__ import annotations

import re

import pytest

from plugin.service import console
from plugin.web.app import create_app
from tests.integration.servers import require_server
from tests.integration.test_ldap_directory import CA, GROUPS, PEOPLE
from tests.plugin.web_app import boundary_services

pytestmark = pytest.mark.integration
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
LDAP = dict(enabled=True, ca_file=CA, url="ldap://127.0.0.1", start_tls=True, bind_template=f"uid={{login}},{PEOPLE}",
            membership="member", admin_group=f"cn=helpdesk-admins,{GROUPS}",
            analyst_group=f"cn=helpdesk-analysts,{GROUPS}")


@pytest.fixture(autouse=True)
def _directory_up() -> None:
    require_server("the test directory (OpenLDAP slapd)", "127.0.0.1", 389)


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    return boundary_services(tmp_path_factory.mktemp("var"), admin={"ldap": LDAP})


def sign_in(client, login: str, password: str):
    tok = CSRF_RE.search(client.get("/admin/login?lang=en").get_data(as_text=True)).group(1)
    return client.post("/admin/login", data={"login": login, "password": password, "csrf_token": tok})


@pytest.mark.parametrize("login, password, role", [("alice", "alice-pass", "admin"), ("bob", "bob-pass", "analyst")])
def test_a_group_member_signs_in_with_the_group_role(services, login, password, role):
    client = create_app(services.settings, services=services).test_client()
    r = sign_in(client, login, password)
    assert r.status_code == 302 and r.headers["Location"] == "/admin/"
    page = client.get("/admin/steering?lang=en").get_data(as_text=True)
    assert ('name="what"' in page) is (role == "admin")
    [entry] = console.audit_entries(services.store, action="sign_in", actor=login)[:1]
    assert entry.detail == f"via ldap, role {role}"


def test_outside_the_groups_is_refused_even_with_the_right_password(services):
    client = create_app(services.settings, services=services).test_client()
    r = sign_in(client, "carol", "carol-pass")
    assert r.status_code == 401
    assert "Wrong login or password." in r.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302
    assert sign_in(client, "alice", "bob-pass").status_code == 401
    texts = [repr(e) for e in console.audit_entries(services.store, limit=1000)]
    assert not any("carol-pass" in t or "bob-pass" in t for t in texts)


def test_a_local_account_wins_over_the_directory(services):
    console.create_user(services.store, "alice", "local password of alice", role="analyst")
    client = create_app(services.settings, services=services).test_client()
    assert sign_in(client, "alice", "alice-pass").status_code == 401  # the directory is not asked
    assert sign_in(client, "alice", "local password of alice").status_code == 302
    services.store.throttle.purge(float("inf"))


def test_an_unreachable_directory_says_so_and_locks_nobody(tmp_path):
    down = boundary_services(tmp_path, admin={"ldap": {**LDAP, "url": "ldap://127.0.0.1:9", "timeout_s": 2},
                                              "throttle": {"account_max_failures": 1}})
    client = create_app(down.settings, services=down).test_client()
    for _ in range(2):
        r = sign_in(client, "alice", "alice-pass")
        assert r.status_code == 503
        assert "The directory cannot be reached right now" in r.get_data(as_text=True)
