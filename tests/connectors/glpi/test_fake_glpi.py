"""The fake GLPI enforces what GLPI's source says GLPI enforces (the pipeline tests rely on it)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.fakes.glpi_server import FakeGLPI


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def session(fake: FakeGLPI, http: requests.Session, token: str) -> dict[str, str]:
    r = http.get(f"{fake.url}/initSession", headers={"Authorization": f"user_token {token}",
                                                     "App-Token": fake.app_token})
    assert r.status_code == 200
    return {"Session-Token": r.json()["session_token"], "App-Token": fake.app_token,
            "X-GLPI-Sanitized-Content": "false"}


def post(fake: FakeGLPI, http: requests.Session, headers: dict[str, str], itemtype: str,
         **item: Any) -> requests.Response:
    return http.post(f"{fake.url}/{itemtype}", headers=headers, json={"input": {"itemtype": "Ticket", **item}})


def test_errors_are_two_element_arrays_with_glpi_codes(fake: FakeGLPI, http: requests.Session) -> None:
    r = http.get(f"{fake.url}/Ticket/1")
    assert (r.status_code, r.json()[0]) == (400, "ERROR_APP_TOKEN_PARAMETERS_MISSING")
    assert len(r.json()) == 2 and "view documentation" in r.json()[1]
    r = http.get(f"{fake.url}/Ticket/1", headers={"App-Token": fake.app_token})
    assert (r.status_code, r.json()[0]) == (400, "ERROR_SESSION_TOKEN_MISSING")
    r = http.get(f"{fake.url}/Ticket/1", headers={"App-Token": fake.app_token, "Session-Token": "nope"})
    assert (r.status_code, r.json()[0]) == (401, "ERROR_SESSION_TOKEN_INVALID")
    r = http.get(f"{fake.url}/initSession", headers={"App-Token": fake.app_token})
    assert (r.status_code, r.json()[0]) == (400, "ERROR_LOGIN_PARAMETERS_MISSING")
    r = http.get(f"{fake.url}/initSession", headers={"App-Token": fake.app_token, "Authorization": "Basic eDp5"})
    assert (r.status_code, r.json()[0]) == (400, "ERROR_LOGIN_WITH_CREDENTIALS_DISABLED")


def test_content_is_html_encoded_unless_asked_raw(fake: FakeGLPI, http: requests.Session) -> None:
    tid = fake.create_ticket(content="<p>x</p>")
    headers = session(fake, http, fake.bot_token)
    assert http.get(f"{fake.url}/Ticket/{tid}", headers=headers).json()["content"] == "<p>x</p>"
    del headers["X-GLPI-Sanitized-Content"]
    assert http.get(f"{fake.url}/Ticket/{tid}", headers=headers).json()["content"] == "&lt;p&gt;x&lt;/p&gt;"


def test_expired_sessions_answer_401(fake: FakeGLPI, http: requests.Session) -> None:
    headers = session(fake, http, fake.bot_token)
    fake.expire_sessions()
    r = http.get(f"{fake.url}/getActiveProfile", headers=headers)
    assert (r.status_code, r.json()[0]) == (401, "ERROR_SESSION_TOKEN_INVALID")


def test_requester_sees_own_ticket_but_not_private_followups(fake: FakeGLPI, http: requests.Session) -> None:
    tid = fake.create_ticket(status=2)
    fake.add_followup(tid, fake.bot_id, "public")
    private_id = fake.add_followup(tid, fake.bot_id, "private", is_private=True)
    req = session(fake, http, fake.requester_token)
    rows = http.get(f"{fake.url}/Ticket/{tid}/ITILFollowup", headers=req).json()
    assert [r["content"] for r in rows] == ["public"]
    r = http.get(f"{fake.url}/ITILFollowup/{private_id}", headers=req)
    assert (r.status_code, r.json()[0]) == (403, "ERROR_RIGHT_MISSING")
    other = fake.create_ticket(requester=fake.add_user("other", "self-service"))
    assert http.get(f"{fake.url}/Ticket/{other}", headers=req).status_code == 403
    assert http.get(f"{fake.url}/User/{fake.bot_id}/UserEmail", headers=req).status_code == 403


def test_followup_rules(fake: FakeGLPI, http: requests.Session) -> None:
    tid = fake.create_ticket(status=2)
    bot = session(fake, http, fake.bot_token)
    r = post(fake, http, bot, "ITILFollowup", items_id=tid, content="")
    assert (r.status_code, r.json()[0]) == (400, "ERROR_GLPI_ADD") and "without description" in r.json()[1]
    r = post(fake, http, bot, "ITILFollowup", items_id=tid, content="", add_reopen=1)
    assert r.status_code == 400 and "specify a reason" in r.json()[1]
    r = post(fake, http, bot, "ITILFollowup", items_id=tid, content="hi")
    assert r.status_code == 201 and r.headers["Location"].endswith(f"/ITILFollowup/{r.json()['id']}")
    assert fake.followups(tid)[0]["is_private"] == 0  # default public
    # add_close on a ticket that is not solved: a plain follow-up, no closing.
    r = post(fake, http, bot, "ITILFollowup", items_id=tid, content="", add_close=1)
    assert r.status_code == 201 and fake.ticket(tid)["status"] == 2
    assert fake.followups(tid)[-1]["content"] == "Solution approved"


def test_solution_rules_and_approval_cycle(fake: FakeGLPI, http: requests.Session) -> None:
    tid = fake.create_ticket(status=2)
    bot = session(fake, http, fake.bot_token)
    assert post(fake, http, bot, "ITILSolution", items_id=tid, content="s1").status_code == 201
    assert fake.ticket(tid)["status"] == 5 and fake.solutions(tid)[0]["status"] == 2
    r = post(fake, http, bot, "ITILSolution", items_id=tid, content="s2")
    assert (r.status_code, r.json()[0]) == (400, "ERROR_GLPI_ADD") and "already solved" in r.json()[1]
    fake.refuse_solution(tid, fake.requester_id, "no")
    assert fake.ticket(tid)["status"] == 1 and fake.solutions(tid)[0]["status"] == 4
    assert fake.solutions(tid)[0]["users_id_approval"] == fake.requester_id
    post(fake, http, bot, "ITILSolution", items_id=tid, content="s3")
    fake.approve_solution(tid, fake.requester_id)
    t = fake.ticket(tid)
    assert t["status"] == 6 and t["closedate"]
    assert [s["status"] for s in fake.solutions(tid)] == [4, 3]


def test_requester_cannot_solve_and_rightless_profile_gets_403(fake: FakeGLPI, http: requests.Session) -> None:
    tid = fake.create_ticket(status=2)
    req = session(fake, http, fake.requester_token)
    r = post(fake, http, req, "ITILSolution", items_id=tid, content="x")
    assert (r.status_code, r.json()[0]) == (403, "ERROR_RIGHT_MISSING")
    fake.add_profile("observer", "Observer", ticket=1024)
    watcher = session(fake, http, fake.token_of(fake.add_user("watcher", "observer")))
    r = post(fake, http, watcher, "ITILFollowup", items_id=tid, content="x")
    assert (r.status_code, r.json()[0]) == (403, "ERROR_RIGHT_MISSING")
    other = fake.create_ticket(requester=fake.add_user("other", "self-service"))
    r = post(fake, http, req, "ITILFollowup", items_id=other, content="x")  # ADDMYTICKET, not my ticket
    assert (r.status_code, r.json()[0]) == (400, "ERROR_GLPI_ADD")


def test_followup_on_a_pending_ticket_reopens_it(fake: FakeGLPI) -> None:
    tid = fake.create_ticket(status=4, assigned=fake.bot_id)
    fake.add_followup(tid, fake.bot_id, "any news?")
    assert fake.ticket(tid)["status"] == 2


def test_search_range_past_the_end(fake: FakeGLPI, http: requests.Session) -> None:
    fake.create_ticket()
    bot = session(fake, http, fake.bot_token)
    r = http.get(f"{fake.url}/search/Ticket", headers=bot, params={"range": "5-10"})
    assert (r.status_code, r.json()[0]) == (400, "ERROR_RANGE_EXCEED_TOTAL")
    r = http.get(f"{fake.url}/search/Ticket", headers=bot, params={"range": "0-10", "forcedisplay[0]": "19"})
    assert r.status_code == 200 and r.headers["Content-Range"] == "0-0/1"
    assert set(r.json()["data"][0]) == {"2", "19"}


def test_profiles_endpoints(fake: FakeGLPI, http: requests.Session) -> None:
    bot = session(fake, http, fake.bot_token)
    assert http.get(f"{fake.url}/getMyProfiles", headers=bot).json()["myprofiles"][0]["name"] == "Technician"
    active = http.get(f"{fake.url}/getActiveProfile", headers=bot).json()["active_profile"]
    assert active["followup"] & 8192 and active["ticket"] & 1024
    assert http.get(f"{fake.url}/getFullSession", headers=bot).json()["session"]["glpiID"] == fake.bot_id
