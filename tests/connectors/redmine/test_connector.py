"""RedmineConnector against recorded exchanges: reading, read-back-checked writes, polling, check()."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
import responses
from responses import matchers
from urllib3.exceptions import MaxRetryError, NewConnectionError

from connectors.base import (
    NotFound,
    OutgoingMessage,
    RejectedByHelpdesk,
    TransientConnectorError,
    WriteNotApplied,
    WriteOutcomeUnknown,
)
from connectors.redmine import RedmineConnector

from .conftest import KEY, ME, STATUSES, URL, add_lookups, body_of, issue, journal

MARKER = "ha-00000000abcd"
MSG = OutgoingMessage(marker=MARKER, paragraphs=["Try restarting the spooler."])


def _issue_seq(rsps: responses.RequestsMock, *answers: dict[str, Any], issue_id: int = 7) -> None:
    """Successive answers of GET /issues/{id}.json (the last one repeats)."""
    for a in answers:
        rsps.get(f"{URL}/issues/{issue_id}.json", json=a)


def _puts(rsps: responses.RequestsMock) -> list[Any]:
    return [body_of(c) for c in rsps.calls if c.request.method == "PUT"]


# -- reading -------------------------------------------------------------------------------------


def test_get_ticket(connector: RedmineConnector, rsps: responses.RequestsMock) -> None:
    add_lookups(rsps)
    rsps.get(
        f"{URL}/issues/7.json",
        json=issue(journals=[journal(1, 5, "More info"), journal(2, 1, f"draft\n\nref {MARKER}", private=True)]),
        match=[
            matchers.query_param_matcher({"include": "journals"}),
            matchers.header_matcher({"X-Redmine-API-Key": KEY}),
        ],
    )
    t = connector.get_ticket("7")
    assert (t.source, t.id, t.subject, t.body, t.state, t.status_name) == (
        "redmine",
        "7",
        "Printer does not print",
        "Error 49",
        "new",
        "New",
    )
    assert t.requester is not None and t.requester.email == "rita@example.test"
    assert t.category == ("Support", "Printers")
    assert t.url == f"{URL}/issues/7"
    assert [(c.id, c.is_private, c.marker) for c in t.comments] == [("1", False, None), ("2", True, MARKER)]
    assert t.created_by_agent is False


def test_requester_email_hidden_is_none(connector: RedmineConnector, rsps: responses.RequestsMock) -> None:
    rsps.get(f"{URL}/issue_statuses.json", json=STATUSES)
    rsps.get(f"{URL}/users/current.json", json={"user": {"id": 5, "login": "requester"}})
    rsps.get(f"{URL}/users/5.json", status=403)
    rsps.get(f"{URL}/issues/7.json", json=issue())
    t = connector.get_ticket("7")
    assert t.requester is not None and t.requester.email is None
    assert t.created_by_agent is True  # the author is the plugin's own account


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ((1, "New", False), "new"),
        ((2, "In Progress", False), "open"),
        ((3, "Resolved", False), "solved"),
        ((4, "Feedback", False), "waiting"),
        ((5, "Closed", True), "closed"),
        ((6, "Rejected", True), "closed"),
    ],
)
def test_states(connector: RedmineConnector, rsps: responses.RequestsMock, status: Any, state: str) -> None:
    add_lookups(rsps)
    rsps.get(f"{URL}/issues/7.json", json=issue(status=status))
    assert connector.get_ticket("7").state == state


def test_outcomes(connector: RedmineConnector, rsps: responses.RequestsMock) -> None:
    add_lookups(rsps)
    journals = [
        journal(1, 1, "", status=("1", "3")),  # agent resolves: no outcome
        journal(2, 5, "still broken", status=("3", "4")),  # requester refuses
        journal(3, 1, "", status=("4", "3")),
        journal(4, 5, "", status=("3", "5")),  # requester closes
        journal(5, 1, "", status=("5", "2")),  # agent reopens
    ]
    rsps.get(f"{URL}/issues/7.json", json=issue(status=(2, "In Progress", False), journals=journals))
    outcomes = connector.get_ticket("7").outcomes
    assert [(o.kind, o.by_requester, o.detail) for o in outcomes] == [
        ("not_solved", True, "still broken"),
        ("solved", True, "status Resolved -> Closed"),
        ("not_solved", False, "status Closed -> In Progress"),
    ]


def test_bad_id_is_not_found(connector: RedmineConnector) -> None:
    with pytest.raises(NotFound):
        connector.get_ticket("7/../../users")


# -- post_comment ----------------------------------------------------------------------------------


def test_private_note_posted_and_confirmed(connector: RedmineConnector, rsps: responses.RequestsMock) -> None:
    rsps.put(f"{URL}/issues/7.json", status=204)
    _issue_seq(rsps, issue(), issue(journals=[journal(9, 1, f"x\n\nref {MARKER}", private=True)]))
    c = connector.post_comment("7", MSG, private=True)
    assert (c.id, c.is_private, c.marker) == ("9", True, MARKER)
    (put,) = _puts(rsps)
    assert put["issue"]["private_notes"] is True
    assert put["issue"]["notes"].endswith(f"ref {MARKER}")


def test_private_note_made_public_by_redmine_is_a_loud_error(
    connector: RedmineConnector, rsps: responses.RequestsMock
) -> None:
    rsps.put(f"{URL}/issues/7.json", status=204)
    _issue_seq(rsps, issue(), issue(journals=[journal(9, 1, f"x ref {MARKER}", private=False)]))
    with pytest.raises(WriteNotApplied, match=r"LEAK.*PUBLIC.*Set notes as private"):
        connector.post_comment("7", MSG, private=True)


def test_note_missing_after_204(connector: RedmineConnector, rsps: responses.RequestsMock) -> None:
    rsps.put(f"{URL}/issues/7.json", status=204)
    _issue_seq(rsps, issue(), issue())
    with pytest.raises(WriteNotApplied, match=r"missing.*Add notes"):
        connector.post_comment("7", MSG, private=False)


def test_retry_finds_the_earlier_note_and_does_not_post_again(
    connector: RedmineConnector, rsps: responses.RequestsMock
) -> None:
    _issue_seq(rsps, issue(journals=[journal(9, 1, f"x ref {MARKER}")]))
    assert connector.post_comment("7", MSG, private=False).id == "9"
    assert _puts(rsps) == []


# -- close_confirmed / hand_back -------------------------------------------------------------------


def test_close_confirmed(connector: RedmineConnector, rsps: responses.RequestsMock) -> None:
    add_lookups(rsps)
    rsps.put(f"{URL}/issues/7.json", status=204)
    closed = issue(status=(5, "Closed", True), journals=[journal(9, 1, f"thanks ref {MARKER}", status=("3", "5"))])
    _issue_seq(rsps, issue(status=(3, "Resolved", False)), closed)
    t = connector.close_confirmed("7", MSG)
    assert t.state == "closed"
    (put,) = _puts(rsps)
    assert put["issue"]["status_id"] == 5 and put["issue"]["private_notes"] is False and MARKER in put["issue"]["notes"]


def test_close_uses_the_configured_status(rsps: responses.RequestsMock) -> None:
    conn = RedmineConnector(URL, KEY, closed_status="rejected")
    add_lookups(rsps)
    rsps.put(f"{URL}/issues/7.json", status=204)
    _issue_seq(rsps, issue(), issue(status=(6, "Rejected", True), journals=[journal(9, 1, f"ref {MARKER}")]))
    conn.close_confirmed("7", MSG)
    assert _puts(rsps)[0]["issue"]["status_id"] == 6


def test_close_refused_by_workflow(connector: RedmineConnector, rsps: responses.RequestsMock) -> None:
    add_lookups(rsps)
    rsps.put(f"{URL}/issues/7.json", status=204)
    _issue_seq(rsps, issue(), issue(journals=[journal(9, 1, f"ref {MARKER}")]))
    with pytest.raises(WriteNotApplied, match="workflow does not allow New -> Closed on tracker Support"):
        connector.close_confirmed("7", MSG)


def test_close_already_closed_does_nothing(connector: RedmineConnector, rsps: responses.RequestsMock) -> None:
    add_lookups(rsps)
    _issue_seq(rsps, issue(status=(5, "Closed", True)))
    assert connector.close_confirmed("7", MSG).state == "closed"
    assert _puts(rsps) == []


def test_unknown_closed_status_is_refused(rsps: responses.RequestsMock) -> None:
    add_lookups(rsps)
    _issue_seq(rsps, issue())
    with pytest.raises(RejectedByHelpdesk, match="'Done' is not a Redmine status"):
        RedmineConnector(URL, KEY, closed_status="Done").close_confirmed("7", MSG)


def test_hand_back_reopens_a_resolved_issue(rsps: responses.RequestsMock) -> None:
    conn = RedmineConnector(URL, KEY, reopen_status="In Progress")
    add_lookups(rsps)
    rsps.put(f"{URL}/issues/7.json", status=204)
    after = issue(status=(2, "In Progress", False), journals=[journal(9, 1, f"ref {MARKER}", private=True)])
    _issue_seq(rsps, issue(status=(3, "Resolved", False)), after)
    assert conn.hand_back("7", MSG).state == "open"
    (put,) = _puts(rsps)
    assert put["issue"]["status_id"] == 2 and put["issue"]["private_notes"] is True


def test_hand_back_without_reopen_status_only_adds_the_private_note(
    connector: RedmineConnector, rsps: responses.RequestsMock
) -> None:
    add_lookups(rsps)
    rsps.put(f"{URL}/issues/7.json", status=204)
    after = issue(status=(3, "Resolved", False), journals=[journal(9, 1, f"ref {MARKER}", private=True)])
    _issue_seq(rsps, issue(status=(3, "Resolved", False)), after)
    connector.hand_back("7", MSG)
    (put,) = _puts(rsps)
    assert "status_id" not in put["issue"]


# -- poll --------------------------------------------------------------------------------------------


def _listed(issue_id: int, created: str, updated: str) -> dict[str, Any]:
    data = issue(issue_id)["issue"]
    data.update(created_on=created, updated_on=updated)
    return data


def test_first_poll_starts_from_the_server_clock(connector: RedmineConnector, rsps: responses.RequestsMock) -> None:
    rsps.get(
        f"{URL}/issues.json", json={"issues": [], "total_count": 0}, headers={"Date": "Tue, 24 Nov 2026 03:00:00 GMT"}
    )
    assert connector.poll(None) == ([], "2026-11-24T03:00:00Z")


def test_poll_pages_overlaps_and_moves_the_watermark(rsps: responses.RequestsMock) -> None:
    conn = RedmineConnector(URL, KEY, projects=["helpdesk"])
    page1 = [_listed(i, "2026-11-24T03:00:00Z", "2026-11-24T03:00:00Z") for i in range(1, 101)]
    page2 = [_listed(101, "2026-11-24T03:00:00Z", "2026-11-24T03:05:00Z")]
    rsps.get(f"{URL}/issues.json", json={"issues": page1, "total_count": 101, "offset": 0, "limit": 100})
    rsps.get(f"{URL}/issues.json", json={"issues": page2, "total_count": 101, "offset": 100, "limit": 100})
    events, watermark = conn.poll("2026-11-24T02:59:00Z")
    assert watermark == "2026-11-24T03:05:00Z"
    assert len(events) == 101
    assert events[-1].kind == "updated" and events[0].kind == "created"
    assert events[-1].delivery_key == "redmine:poll:101:2026-11-24T03:05:00Z"
    q = parse_qs(urlparse(rsps.calls[0].request.url or "").query)
    assert q["updated_on"] == [">=2026-11-24T02:58:55Z"]  # 5 s overlap
    assert q["status_id"] == ["*"] and q["project_id"] == ["helpdesk"] and q["limit"] == ["100"]
    assert "%3E%3D" in (rsps.calls[0].request.url or "")  # the operator travels hex-encoded
    assert parse_qs(urlparse(rsps.calls[1].request.url or "").query)["offset"] == ["100"]


def test_poll_skips_a_bad_item_and_keeps_the_watermark_when_nothing_changed(
    connector: RedmineConnector, rsps: responses.RequestsMock
) -> None:
    good = _listed(3, "2026-11-24T03:00:00Z", "2026-11-24T03:01:00Z")
    rsps.get(f"{URL}/issues.json", json={"issues": [{"id": "x"}, good], "total_count": 2})
    events, watermark = connector.poll("2026-11-24T03:00:30Z")
    assert [e.ticket_id for e in events] == ["3"] and watermark == "2026-11-24T03:01:00Z"
    rsps.replace(responses.GET, f"{URL}/issues.json", json={"issues": [], "total_count": 0})
    assert connector.poll("2026-11-24T03:01:00Z") == ([], "2026-11-24T03:01:00Z")


# -- check -----------------------------------------------------------------------------------------


def _by_name(results: list[Any]) -> dict[str, Any]:
    return {r.name: r for r in results}


def test_check_admin_all_ok(connector: RedmineConnector, rsps: responses.RequestsMock) -> None:
    add_lookups(rsps)
    results = connector.check()
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    assert "administrator" in _by_name(results)["api_key"].detail


def test_check_names_missing_rights(rsps: responses.RequestsMock) -> None:
    conn = RedmineConnector(URL, KEY, polling=True)
    rsps.get(f"{URL}/issue_statuses.json", json=STATUSES)
    me = {
        "user": {
            "id": 6,
            "login": "agent",
            "admin": False,
            "memberships": [{"id": 2, "project": {"id": 1, "name": "Helpdesk"}, "roles": [{"id": 6, "name": "Agent"}]}],
        }
    }
    rsps.get(f"{URL}/users/current.json", json=me)
    rsps.get(
        f"{URL}/roles/6.json",
        json={"role": {"id": 6, "name": "Agent", "permissions": ["view_issues", "add_issue_notes", "edit_issues"]}},
    )
    results = _by_name(conn.check())
    assert not results["right:set_notes_private"].ok
    assert "Set notes as private" in results["right:set_notes_private"].detail
    assert "PUBLIC" in results["right:set_notes_private"].detail
    assert not results["right:view_private_notes"].ok
    assert results["right:add_issue_notes"].ok
    assert results["webhooks"].ok and "warning" in results["webhooks"].detail


@pytest.mark.parametrize(
    ("status", "name", "words"),
    [(401, "api_key", "My account"), (403, "rest_api", "Enable REST web service")],
)
def test_check_auth_and_rest_disabled(
    connector: RedmineConnector, rsps: responses.RequestsMock, status: int, name: str, words: str
) -> None:
    rsps.get(f"{URL}/users/current.json", status=status)
    results = _by_name(connector.check())
    assert not results[name].ok and words in results[name].detail


def test_check_unreachable() -> None:
    conn = RedmineConnector("http://127.0.0.1:9", KEY, timeout_s=1)
    (result,) = conn.check()
    assert result.name == "reachable" and not result.ok


def test_check_workflow_tried_on_the_newest_open_issue(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{URL}/issue_statuses.json", json=STATUSES)
    rsps.get(f"{URL}/users/current.json", json=ME)
    rsps.get(f"{URL}/issues.json", json={"issues": [{"id": 7}], "total_count": 1})
    allowed = issue()
    allowed["issue"]["allowed_statuses"] = [{"id": 1, "name": "New"}, {"id": 5, "name": "Closed", "is_closed": True}]
    rsps.get(
        f"{URL}/issues/7.json", json=allowed, match=[matchers.query_param_matcher({"include": "allowed_statuses"})]
    )
    assert _by_name(RedmineConnector(URL, KEY).check())["workflow"].ok
    workflow = _by_name(RedmineConnector(URL, KEY, closed_status="Rejected").check())["workflow"]
    assert not workflow.ok and "Rejected on issue(s) #7 (Support, New)" in workflow.detail


def test_check_without_webhooks_or_polling_fails(rsps: responses.RequestsMock) -> None:
    add_lookups(rsps)
    assert not _by_name(RedmineConnector(URL, KEY).check())["webhooks"].ok


def test_me_cached(connector: RedmineConnector, rsps: responses.RequestsMock) -> None:
    rsps.get(f"{URL}/users/current.json", json=ME)
    connector.me()
    connector.me()
    assert len(rsps.calls) == 1


# -- scope (issue 8 item 7) ------------------------------------------------------------------------


def test_item7_scope_is_the_issues_project_and_only_configured_projects_are_in(rsps: responses.RequestsMock) -> None:
    conn = RedmineConnector(URL, KEY, projects=["helpdesk", "gone"])
    add_lookups(rsps)
    rsps.get(f"{URL}/issues/7.json", json=issue())
    rsps.get(f"{URL}/projects/helpdesk.json", json={"project": {"id": 1, "name": "Helpdesk", "identifier": "helpdesk"}})
    rsps.get(f"{URL}/projects/gone.json", status=404, json={})
    ticket = conn.get_ticket("7")
    assert ticket.scope == "1"
    assert conn.out_of_scope(ticket) is None
    other = ticket.model_copy(update={"scope": "4"})
    assert conn.out_of_scope(other) == "project id 4 is not in redmine.projects (helpdesk, gone)"
    assert conn.out_of_scope(ticket.model_copy(update={"scope": ""})) is not None
    # Identifiers are resolved once: no second GET /projects/helpdesk.json.
    assert sum(1 for c in rsps.calls if (c.request.url or "").endswith("/projects/helpdesk.json")) == 1
    assert RedmineConnector(URL, KEY).out_of_scope(other) is None  # no projects configured: all in


def test_item7_polling_asks_for_exactly_the_configured_project(rsps: responses.RequestsMock) -> None:
    conn = RedmineConnector(URL, KEY, projects=["helpdesk"])
    rsps.get(f"{URL}/issues.json", json={"issues": [], "total_count": 0})
    conn.poll("2026-11-24T02:59:00Z")
    q = parse_qs(urlparse(rsps.calls[0].request.url or "").query)
    assert q["project_id"] == ["helpdesk"] and q["subproject_id"] == ["!*"]


# -- issue 8 item 3: a PUT that Redmine received but did not answer ----------------------------------


def _slow_connector(**kw: Any) -> tuple[RedmineConnector, list[float]]:
    slept: list[float] = []
    return RedmineConnector(URL, KEY, unknown_write_wait_s=30, sleep=slept.append, **kw), slept


def test_item3_unanswered_note_is_read_back_until_it_shows_not_posted_again(rsps: responses.RequestsMock) -> None:
    conn, slept = _slow_connector()
    rsps.put(f"{URL}/issues/7.json", body=requests.ReadTimeout("read timed out"))
    landed = issue(journals=[journal(9, 1, f"x\n\nref {MARKER}", private=True)])
    # Before the PUT, then twice before it lands, then landed (and the connector's own read-back).
    _issue_seq(rsps, issue(), issue(), issue(), landed)
    c = conn.post_comment("7", MSG, private=True)
    assert (c.id, c.is_private) == ("9", True)
    assert len(_puts(rsps)) == 1, "the note was not sent a second time"
    assert slept == [0.5, 1.0, 2.0]


def test_item3_a_note_that_never_shows_is_reported_unknown_for_the_retry(rsps: responses.RequestsMock) -> None:
    conn, slept = _slow_connector()
    rsps.put(f"{URL}/issues/7.json", body=requests.ConnectionError("Connection reset by peer"))
    _issue_seq(rsps, issue())
    with pytest.raises(WriteOutcomeUnknown, match="may still apply it"):
        conn.post_comment("7", MSG, private=False)
    assert len(_puts(rsps)) == 1
    assert sum(slept) <= 30 + 1e-9 and len(slept) >= 3


def test_item3_a_refused_connection_is_not_an_unknown_outcome(rsps: responses.RequestsMock) -> None:
    conn, slept = _slow_connector()
    refused = requests.ConnectionError(MaxRetryError(None, "/issues/7.json", NewConnectionError(None, "refused")))  # type: ignore[arg-type]
    rsps.put(f"{URL}/issues/7.json", body=refused)
    _issue_seq(rsps, issue())
    with pytest.raises(TransientConnectorError) as info:
        conn.post_comment("7", MSG, private=False)
    assert not isinstance(info.value, WriteOutcomeUnknown)
    assert slept == [], "never sent: nothing to wait for, the retry may send it"


def test_item3_unanswered_close_waits_for_the_status(rsps: responses.RequestsMock) -> None:
    conn, _ = _slow_connector()
    add_lookups(rsps)
    rsps.put(f"{URL}/issues/7.json", body=requests.ReadTimeout("read timed out"))
    closed = issue(status=(5, "Closed", True), journals=[journal(9, 1, f"thanks ref {MARKER}", status=("3", "5"))])
    _issue_seq(rsps, issue(status=(3, "Resolved", False)), issue(status=(3, "Resolved", False)), closed)
    assert conn.close_confirmed("7", MSG).state == "closed"
    assert len(_puts(rsps)) == 1


def test_item3_unanswered_hand_back_waits_for_its_note(rsps: responses.RequestsMock) -> None:
    conn, _ = _slow_connector(reopen_status="In Progress")
    add_lookups(rsps)
    rsps.put(f"{URL}/issues/7.json", body=requests.ReadTimeout("read timed out"))
    after = issue(status=(2, "In Progress", False), journals=[journal(9, 1, f"ref {MARKER}", private=True)])
    _issue_seq(rsps, issue(status=(3, "Resolved", False)), issue(status=(3, "Resolved", False)), after)
    assert conn.hand_back("7", MSG).state == "open"
    assert len(_puts(rsps)) == 1
