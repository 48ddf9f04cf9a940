"""Opening a ticket on someone's behalf (TicketCreator) against the fake GLPI, and the fake's own rules for it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from connectors.base import (
    NewTicket,
    NotFound,
    PermissionDenied,
    Person,
    RejectedByHelpdesk,
    TransientConnectorError,
    WriteNotApplied,
)
from connectors.glpi import GLPIConnector
from tests.fakes.glpi_server import TECHNICIAN, TICKET_READALL, TICKET_UPDATE, FakeGLPI, iter_requests

MARKER = "ha-00c0ffee0001"
CONVERSATION = (
    "Вопрос: Не подключается VPN, пишет <Connection attempt has failed>\n"
    "Ответ помощника: Проверьте адрес vpn.example.ru.\n"
    "Оценка: не помогло\n\n"
    "Вопрос: всё равно не работает & что делать?"
)


@pytest.fixture
def creator(fake: FakeGLPI) -> Iterator[GLPIConnector]:
    conn = GLPIConnector(url=fake.url, user_token=fake.bot_token, app_token=fake.app_token, timeout_s=5,
                         create_tickets=True)
    yield conn
    conn.close()


def new_ticket(requester: Person, marker: str = MARKER, **kw: Any) -> NewTicket:
    base: dict[str, Any] = {"subject": "VPN не подключается", "body": CONVERSATION, "requester": requester,
                            "marker": marker, "category": "VPN и удаленный доступ"}
    base.update(kw)
    return NewTicket.model_validate(base)


# ---------------------------------------------------------------------------------------- find_requester
@pytest.mark.parametrize("typed", ["jdoe", "JDoe", "  jdoe ", "jdoe@example.org", "JDOE@EXAMPLE.ORG"])
def test_find_requester_by_login_or_email(fake: FakeGLPI, creator: GLPIConnector, typed: str) -> None:
    person = creator.find_requester(typed)
    assert person is not None
    assert (person.id, person.login, person.name) == (str(fake.requester_id), "jdoe", "Doe John")
    assert person.email is not None and person.email.lower() == "jdoe@example.org"


def test_find_requester_by_a_secondary_address_keeps_that_address(fake: FakeGLPI, creator: GLPIConnector) -> None:
    uid = fake.add_user("asmith", "self-service", email="a.smith@example.org", extra_emails=("anna@old.example",))
    person = creator.find_requester("anna@old.example")
    assert person is not None and (person.id, person.email) == (str(uid), "anna@old.example")
    by_login = creator.find_requester("asmith")
    assert by_login is not None and by_login.email == "a.smith@example.org"  # the default address


@pytest.mark.parametrize("typed", ["jdo", "doe", "jdoe@example", "example.org", "j_oe", "jdoe%"])
def test_find_requester_needs_an_exact_match(creator: GLPIConnector, typed: str) -> None:
    assert creator.find_requester(typed) is None


def test_find_requester_ignores_inactive_users(fake: FakeGLPI, creator: GLPIConnector) -> None:
    uid = fake.add_user("gone", "self-service", email="gone@example.org")
    fake.users[uid].is_active = False
    assert creator.find_requester("gone") is None
    assert creator.find_requester("gone@example.org") is None


def test_find_requester_with_an_address_shared_by_two_users_asks_for_the_login(
        fake: FakeGLPI, creator: GLPIConnector) -> None:
    fake.add_user("twin1", "self-service", email="shared@example.org")
    fake.add_user("twin2", "self-service", email="shared@example.org")
    with pytest.raises(RejectedByHelpdesk, match="ask for the login"):
        creator.find_requester("shared@example.org")


@pytest.mark.parametrize(("typed", "words"), [("", "empty"), ("two words", "without spaces"), ("a\nb", "without"),
                                             ("x" * 300, "longer than 254")])
def test_find_requester_rejects_malformed_input_with_a_reason(creator: GLPIConnector, typed: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        creator.find_requester(typed)


def test_find_requester_without_the_right_to_read_users_says_which_right(
        fake: FakeGLPI, creator: GLPIConnector) -> None:
    fake.set_rights(TECHNICIAN, user=0)
    with pytest.raises(PermissionDenied, match="tick 'Read' for Users"):
        creator.find_requester("jdoe")


# ---------------------------------------------------------------------------------------- create_ticket
def test_create_ticket_sets_the_person_as_requester_and_reads_it_back(fake: FakeGLPI, creator: GLPIConnector) -> None:
    person = creator.find_requester("jdoe@example.org")
    assert person is not None
    ticket = creator.create_ticket(new_ticket(person))

    tid = int(ticket.id)
    assert [(r["users_id"], r["type"]) for r in fake.requesters(tid)] == [(fake.requester_id, 1)]
    stored = fake.ticket(tid)
    assert stored["users_id_recipient"] == fake.bot_id  # GLPI records the API user as the writer
    assert stored["name"] == "VPN не подключается"
    # User text is escaped HTML; the marker is in the description so a retry can find it.
    assert "&lt;Connection attempt has failed&gt;" in stored["content"] and "&amp; что делать" in stored["content"]
    assert "<Connection" not in stored["content"]
    assert f"ref {MARKER}" in stored["content"] and "Category: VPN и удаленный доступ" in stored["content"]
    assert ("new", tid, 0) in fake.notifications  # the requester is told, as for any new ticket
    # The returned ticket is the one read back, in plain text, and it is not answered by the pipeline.
    assert ticket.requester is not None and ticket.requester.id == str(fake.requester_id)
    assert "Оценка: не помогло" in ticket.body and "<Connection attempt has failed>" in ticket.body
    assert ticket.created_by_agent and ticket.state == "new"
    assert ticket.url == f"{fake.web_url}/front/ticket.form.php?id={tid}"


def test_a_retry_returns_the_ticket_of_the_first_attempt(fake: FakeGLPI, creator: GLPIConnector) -> None:
    person = creator.find_requester("jdoe")
    assert person is not None
    first = creator.create_ticket(new_ticket(person))
    again = creator.create_ticket(new_ticket(person))
    assert again.id == first.id
    assert len(fake.tickets) == 1 and len(list(iter_requests(fake, "POST", "/Ticket"))) == 1
    # Another hand-off (another marker) is another ticket.
    other = creator.create_ticket(new_ticket(person, marker="ha-00c0ffee0002"))
    assert other.id != first.id and len(fake.tickets) == 2


def test_a_marker_in_someone_elses_ticket_is_not_taken_for_ours(fake: FakeGLPI, creator: GLPIConnector) -> None:
    other = fake.add_user("other", "self-service", email="other@example.org")
    fake.create_ticket(requester=other, content=f"<p>copied from a chat: ref {MARKER}</p>")
    person = creator.find_requester("jdoe")
    assert person is not None
    assert creator.find_created(new_ticket(person)) is None
    ticket = creator.create_ticket(new_ticket(person))
    assert ticket.requester is not None and ticket.requester.id == str(fake.requester_id)
    assert len(fake.tickets) == 2


def test_a_person_without_a_glpi_account_becomes_the_anonymous_requester(
        fake: FakeGLPI, creator: GLPIConnector) -> None:
    person = Person(id="email:visitor@outside.example", email="visitor@outside.example")
    ticket = creator.create_ticket(new_ticket(person))
    [row] = fake.requesters(int(ticket.id))
    assert (row["users_id"], row["alternative_email"], row["use_notification"]) == (
        0, "visitor@outside.example", 1)
    assert ticket.requester is not None and ticket.requester.email == "visitor@outside.example"
    assert creator.create_ticket(new_ticket(person)).id == ticket.id  # idempotent here too


def test_a_requester_with_neither_account_nor_address_is_not_found(creator: GLPIConnector) -> None:
    with pytest.raises(NotFound):
        creator.create_ticket(new_ticket(Person(id="email:")))


def test_the_configured_entity_is_used(fake: FakeGLPI) -> None:
    fake.entities = {0, 3}
    conn = GLPIConnector(url=fake.url, user_token=fake.bot_token, app_token=fake.app_token, create_entity_id=3)
    ticket = conn.create_ticket(new_ticket(Person(id=str(fake.requester_id))))
    assert fake.ticket(int(ticket.id))["entities_id"] == 3
    conn.close()


def test_an_entity_the_profile_lacks_is_a_permission_problem(fake: FakeGLPI) -> None:
    conn = GLPIConnector(url=fake.url, user_token=fake.bot_token, app_token=fake.app_token, create_entity_id=5)
    with pytest.raises(PermissionDenied, match="entity 5"):
        conn.create_ticket(new_ticket(Person(id=str(fake.requester_id))))
    assert not fake.tickets
    conn.close()


def test_without_the_create_right_glpi_answers_400_and_we_name_the_right(
        fake: FakeGLPI, creator: GLPIConnector) -> None:
    fake.set_rights(TECHNICIAN, ticket=TICKET_READALL | TICKET_UPDATE)
    with pytest.raises(PermissionDenied, match="Tick 'Create' for Tickets") as exc:
        creator.create_ticket(new_ticket(Person(id=str(fake.requester_id))))
    assert "Administration > Profiles > Technician" in str(exc.value)
    [post] = iter_requests(fake, "POST", "/Ticket")
    assert post.status == 400
    assert not fake.tickets


def test_a_mandatory_template_field_is_a_business_refusal_with_glpis_words(
        fake: FakeGLPI, creator: GLPIConnector) -> None:
    fake.mandatory_ticket_fields = ["itilcategories_id"]
    with pytest.raises(RejectedByHelpdesk, match="Mandatory fields are not filled") as exc:
        creator.create_ticket(new_ticket(Person(id=str(fake.requester_id))))
    assert not isinstance(exc.value, PermissionDenied)


def test_a_business_rule_that_changes_the_requester_is_detected(fake: FakeGLPI, creator: GLPIConnector) -> None:
    def rule(inp: dict[str, Any]) -> dict[str, Any]:
        return {**inp, "_users_id_requester": fake.bot_id}

    fake.ticket_rule = rule
    with pytest.raises(WriteNotApplied, match="business rule"):
        creator.create_ticket(new_ticket(Person(id=str(fake.requester_id))))


def test_an_unknown_user_id_leaves_the_ticket_without_requester_and_is_detected(
        fake: FakeGLPI, creator: GLPIConnector) -> None:
    with pytest.raises(WriteNotApplied, match="requester is nobody"):
        creator.create_ticket(new_ticket(Person(id="999")))


@pytest.mark.parametrize("status", [500, 503])
def test_glpi_down_is_transient_and_a_retry_creates_once(fake: FakeGLPI, creator: GLPIConnector, status: int) -> None:
    fake.fail_next(status, "ERROR", "maintenance", path_contains="/Ticket")
    person = Person(id=str(fake.requester_id))
    with pytest.raises(TransientConnectorError):
        creator.create_ticket(new_ticket(person))
    ticket = creator.create_ticket(new_ticket(person))
    assert len(fake.tickets) == 1 and fake.ticket(int(ticket.id))["id"] == int(ticket.id)


def test_unreachable_glpi_is_transient() -> None:
    conn = GLPIConnector("http://127.0.0.1:9/apirest.php", "t", "a", timeout_s=2)
    with pytest.raises(TransientConnectorError):
        conn.create_ticket(new_ticket(Person(id="2")))
    conn.close()


# ---------------------------------------------------------------------------------------- check()
def _check(conn: GLPIConnector) -> dict[str, Any]:
    return {r.name: r for r in conn.check()}


def test_check_tests_the_create_right_only_when_creation_is_configured(fake: FakeGLPI, creator: GLPIConnector) -> None:
    results = _check(creator)
    assert results["Create tickets"].ok and "can create tickets" in results["Create tickets"].detail
    fake.set_rights(TECHNICIAN, ticket=TICKET_READALL | TICKET_UPDATE)
    bad = _check(creator)["Create tickets"]
    assert not bad.ok and "tick 'Create' for Tickets in Administration > Profiles > Technician" in bad.detail
    plain = GLPIConnector(url=fake.url, user_token=fake.bot_token, app_token=fake.app_token)
    assert "Create tickets" not in _check(plain)
    plain.close()


def test_check_names_a_missing_entity(fake: FakeGLPI) -> None:
    conn = GLPIConnector(url=fake.url, user_token=fake.bot_token, app_token=fake.app_token, create_tickets=True,
                         create_entity_id=7)
    result = _check(conn)["Ticket entity"]
    assert not result.ok and "glpi.create_entity_id" in result.detail
    fake.entities = {0, 7}
    assert _check(conn)["Ticket entity"].ok
    conn.close()


# ---------------------------------------------------------------------------------------- the fake's rules
@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def _session(fake: FakeGLPI, http: requests.Session, token: str) -> dict[str, str]:
    r = http.get(f"{fake.url}/initSession", headers={"Authorization": f"user_token {token}",
                                                     "App-Token": fake.app_token})
    return {"Session-Token": r.json()["session_token"], "App-Token": fake.app_token,
            "X-GLPI-Sanitized-Content": "false"}


def test_fake_post_ticket_without_requester_makes_the_writer_the_requester(
        fake: FakeGLPI, http: requests.Session) -> None:
    headers = _session(fake, http, fake.requester_token)  # a self-service user files its own ticket
    r = http.post(f"{fake.url}/Ticket", headers=headers, json={"input": {"name": "", "content": "<p>Mouse is dead</p>"}})
    assert r.status_code == 201 and set(r.json()) == {"id", "message"}
    tid = r.json()["id"]
    assert r.headers["Location"].endswith(f"/Ticket/{tid}")
    assert fake.ticket(tid)["name"] == "Mouse is dead"  # built from the content
    assert [(x["users_id"], x["type"]) for x in fake.requesters(tid)] == [(fake.requester_id, 1)]


def test_fake_post_ticket_rejects_a_bad_alternative_email(fake: FakeGLPI, http: requests.Session) -> None:
    headers = _session(fake, http, fake.bot_token)
    r = http.post(f"{fake.url}/Ticket", headers=headers, json={"input": {
        "name": "x", "content": "y", "_users_id_requester": 0,
        "_users_id_requester_notif": {"use_notification": [1], "alternative_email": ["not-an-address"]}}})
    assert (r.status_code, r.json()[0]) == (400, "ERROR_GLPI_ADD")
    assert "Invalid email address not-an-address" in r.json()[1]


def test_fake_user_search_returns_several_addresses_as_a_list(fake: FakeGLPI, http: requests.Session) -> None:
    fake.add_user("multi", "self-service", email="m1@example.org", extra_emails=("m2@example.org",))
    headers = _session(fake, http, fake.bot_token)
    params = {"criteria[0][field]": "1", "criteria[0][searchtype]": "contains", "criteria[0][value]": "^multi$",
              "forcedisplay[0]": "5"}
    [row] = http.get(f"{fake.url}/search/User", headers=headers, params=params).json()["data"]
    assert row["5"] == ["m1@example.org", "m2@example.org"] and row["1"] == "multi"
    bad = http.get(f"{fake.url}/search/User", headers=headers, params={"criteria[0][field]": "77",
                                                                        "criteria[0][value]": "x"})
    assert bad.status_code == 400 and "Bad field ID" in bad.json()[1]
    selfservice = _session(fake, http, fake.requester_token)
    denied = http.get(f"{fake.url}/search/User", headers=selfservice, params=params)
    assert (denied.status_code, denied.json()[0]) == (403, "ERROR_RIGHT_MISSING")
