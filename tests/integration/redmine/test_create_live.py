"""Opening an issue on someone's behalf against the real Redmine 5 (X-Redmine-Switch-User with the admin key)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests

from connectors.base import NewTicket, NotFound, PermissionDenied, Person, TransientConnectorError, WriteNotApplied
from connectors.redmine import RedmineConnector
from connectors.redmine.connector import note_to_text

from .conftest import RedmineServer

pytestmark = [pytest.mark.integration]

OUTSIDER = {"login": "outsider", "firstname": "Olga", "lastname": "Outsider", "mail": "outsider@example.test"}
CONVERSATION = (
    "Вопрос: VPN не подключается, AnyConnect пишет *Connection attempt has failed*\n"
    "Ответ помощника (запись «VPN не подключается»): проверьте адрес vpn.example.ru — не помогло\n\n"
    "Вопрос: <b>всё равно</b> не работает, что делать?"
)


def marker() -> str:
    return "ha-" + uuid.uuid4().hex[:12]


def new_ticket(person: Person, mark: str = "", **kw: Any) -> NewTicket:
    return NewTicket(subject=f"VPN не подключается {uuid.uuid4().hex[:6]}", body=CONVERSATION, requester=person,
                     marker=mark or marker(), category="VPN и удаленный доступ", **kw)


def creator(redmine: RedmineServer, key: str = "", **kw: Any) -> RedmineConnector:
    kw.setdefault("create_project", redmine.project)
    kw.setdefault("create_tracker", "Support")
    return redmine.connector(key, **kw)


def issues_with(redmine: RedmineServer, mark: str) -> list[dict[str, Any]]:
    params = {"status_id": "*", "description": "~" + mark, "limit": 100}
    return redmine.call("GET", "/issues.json", redmine.admin_key, params=params).json()["issues"]


@pytest.fixture(scope="module")
def outsider(redmine: RedmineServer) -> Person:
    """An active Redmine user who is a member of no project (created once, kept)."""
    found = redmine.call("GET", "/users.json", redmine.admin_key, params={"name": OUTSIDER["login"]}).json()["users"]
    if not found:
        body = {"user": {**OUTSIDER, "password": "outsider-pass-123"}}
        redmine.call("POST", "/users.json", redmine.admin_key, json=body)
    person = redmine.connector().find_requester(OUTSIDER["login"])
    assert person is not None
    return person


@pytest.mark.parametrize("typed", ["requester", "REQUESTER", "requester@example.test", " Requester@Example.test "])
def test_find_requester_by_login_or_mail(redmine: RedmineServer, typed: str) -> None:
    person = redmine.connector().find_requester(typed)
    assert person is not None
    assert (person.login, person.name, person.email) == ("requester", "Rita Requester", "requester@example.test")


@pytest.mark.parametrize("typed", ["request", "Rita", "Requester_", "example.test", "nobody@example.test"])
def test_find_requester_needs_an_exact_login_or_mail(redmine: RedmineServer, typed: str) -> None:
    assert redmine.connector().find_requester(typed) is None


def test_find_requester_needs_an_administrators_key(redmine: RedmineServer) -> None:
    with pytest.raises(PermissionDenied, match="administrator"):
        redmine.connector(redmine.agent_key).find_requester("requester")


def test_the_issue_is_created_as_the_person_with_the_conversation(redmine: RedmineServer) -> None:
    conn = creator(redmine)
    person = conn.find_requester("requester@example.test")
    assert person is not None
    new = new_ticket(person)
    ticket = conn.create_ticket(new)

    # Read with the requester's own key: the issue is theirs, in the project and tracker configured.
    seen = redmine.issue(int(ticket.id), redmine.requester_key)
    assert seen["author"] == {"id": int(person.id), "name": "Rita Requester"}
    assert (seen["project"]["name"], seen["tracker"]["name"], seen["status"]["name"]) == ("Helpdesk", "Support", "New")
    assert seen["subject"] == new.subject
    # The description shows the conversation as typed (escaped for textile), with the marker.
    text = note_to_text(seen["description"], "textile")
    for line in ("*Connection attempt has failed*", "<b>всё равно</b> не работает, что делать?",
                 "проверьте адрес vpn.example.ru — не помогло", "VPN и удаленный доступ", f"ref {new.marker}"):
        assert line in text, line
    assert "<b>" not in seen["description"]  # no markup reaches Redmine's formatter
    # What create_ticket returned is that issue, read back.
    assert ticket.author is not None and ticket.author.id == person.id
    assert ticket.requester is not None and ticket.requester.email == "requester@example.test"
    assert ticket.url == f"{redmine.url}/issues/{ticket.id}"


def test_a_retry_creates_nothing_new(redmine: RedmineServer) -> None:
    conn = creator(redmine)
    person = conn.find_requester("requester")
    assert person is not None
    new = new_ticket(person)
    first = conn.create_ticket(new)
    again = creator(redmine).create_ticket(new)  # another process, after a crash
    assert again.id == first.id
    assert [i["id"] for i in issues_with(redmine, new.marker)] == [int(first.id)]
    assert conn.find_created(new_ticket(person)) is None  # another hand-off is not confused with it


def test_without_a_tracker_setting_the_projects_first_tracker_is_used(redmine: RedmineServer) -> None:
    conn = creator(redmine, create_tracker="")
    person = conn.find_requester("requester")
    assert person is not None
    ticket = conn.create_ticket(new_ticket(person))
    assert redmine.issue(int(ticket.id), redmine.admin_key)["tracker"]["name"] == "Bug"


def test_a_login_that_is_no_active_user_is_not_found(redmine: RedmineServer) -> None:
    mark = marker()
    ghost = Person(id="5", login=f"ghost{uuid.uuid4().hex[:6]}")  # a real id, a login Redmine does not know
    with pytest.raises(NotFound, match="412"):
        creator(redmine).create_ticket(new_ticket(ghost, mark))
    assert issues_with(redmine, mark) == []


def test_a_person_who_may_not_add_issues_there_is_told_which_right(redmine: RedmineServer, outsider: Person) -> None:
    mark = marker()
    """Redmine 5 answers 422 "Project cannot be blank" (in the person's language): the memberships tell why."""
    with pytest.raises(PermissionDenied, match="outsider is not a member of project Helpdesk") as exc:
        creator(redmine).create_ticket(new_ticket(outsider, mark))
    assert "'Add issues'" in str(exc.value) and "Project cannot be blank" in str(exc.value)
    assert issues_with(redmine, mark) == []


def test_a_non_admin_key_is_detected_because_redmine_ignores_the_switch(redmine: RedmineServer) -> None:
    """Redmine silently runs the request as the key's owner: the issue exists, authored by 'agent'."""
    person = redmine.connector().find_requester("requester")
    assert person is not None
    new = new_ticket(person)
    with pytest.raises(WriteNotApplied, match="administrator"):
        creator(redmine, redmine.agent_key).create_ticket(new)
    [made] = issues_with(redmine, new.marker)
    assert made["author"]["name"] == "Alex Agent"


def test_a_person_without_redmine_account_cannot_get_an_issue(redmine: RedmineServer) -> None:
    with pytest.raises(NotFound, match="no Redmine account"):
        creator(redmine).create_ticket(new_ticket(Person(id="email:x@outside.example", email="x@outside.example")))


def test_redmine_down_is_transient() -> None:
    conn = RedmineConnector("http://127.0.0.1:9", "a" * 40, create_project="helpdesk", timeout_s=2)
    with pytest.raises(TransientConnectorError):
        conn.create_ticket(new_ticket(Person(id="5", login="requester")))


def _check(conn: RedmineConnector) -> dict[str, Any]:
    return {r.name: r for r in conn.check()}


def test_check_tests_creation_when_a_project_is_configured(redmine: RedmineServer) -> None:
    results = _check(creator(redmine))
    for name in ("create:admin_key", "create:project", "create:tracker", "create:add_issues"):
        assert results[name].ok, results[name]
    assert "Support" in results["create:tracker"].detail
    assert "Reporter" in results["create:add_issues"].detail
    assert "create:project" not in _check(redmine.connector())


def test_check_names_a_wrong_tracker_and_a_non_admin_key(redmine: RedmineServer) -> None:
    bad = _check(creator(redmine, create_tracker="Nope"))["create:tracker"]
    assert not bad.ok and "'Nope' is not a tracker" in bad.detail and "Support" in bad.detail
    agent = _check(creator(redmine, redmine.agent_key))["create:admin_key"]
    assert not agent.ok and "administrator" in agent.detail
    missing = _check(creator(redmine, create_project="no-such-project"))["create:project"]
    assert not missing.ok and "does not exist" in missing.detail


def test_the_requester_sees_the_issue_in_the_web_ui(redmine: RedmineServer) -> None:
    """The person can open their issue in Redmine (their own login, not the admin's)."""
    person = redmine.connector().find_requester("requester")
    assert person is not None
    ticket = creator(redmine).create_ticket(new_ticket(person))
    r = requests.get(f"{redmine.url}/issues/{ticket.id}.json", auth=("requester", redmine.requester_password),
                     timeout=30)
    assert r.status_code == 200 and r.json()["issue"]["author"]["id"] == int(person.id)
