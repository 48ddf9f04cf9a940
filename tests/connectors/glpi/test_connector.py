"""GLPIConnector against the fake GLPI: reading, writing with read-back, approval outcomes, polling, check()."""

from __future__ import annotations

import logging

import pytest

from connectors.base import Link, OutgoingMessage, SuggestedEntry, WriteNotApplied
from connectors.glpi import GLPIConnector
from connectors.glpi.connector import derive_web_url, html_to_text, render_html
from tests.fakes.glpi_server import (
    FOLLOWUP_ADDMYTICKET,
    FOLLOWUP_SEEPUBLIC,
    TECHNICIAN,
    FakeGLPI,
    iter_requests,
)

MARKER = "ha-0123456789ab"


def message(**kw: object) -> OutgoingMessage:
    base: dict[str, object] = {"marker": MARKER, "heading": "Suggested answer",
                               "paragraphs": ["Restart the print spooler."]}
    base.update(kw)
    return OutgoingMessage.model_validate(base)


# ---------------------------------------------------------------------------------------- reading
def test_get_ticket_with_requester_email_category_and_url(fake: FakeGLPI, connector: GLPIConnector) -> None:
    tid = fake.create_ticket(name="VPN down", content="<p>The VPN <b>fails</b> since 9:00.</p>",
                             category="Network > VPN")
    t = connector.get_ticket(str(tid))
    assert (t.source, t.id, t.subject, t.body) == ("glpi", str(tid), "VPN down", "The VPN fails since 9:00.")
    assert t.state == "new" and t.status_name == "New (1)"
    assert t.requester is not None
    assert (t.requester.id, t.requester.email, t.requester.login, t.requester.name) == (
        str(fake.requester_id), "jdoe@example.org", "jdoe", "Doe John")
    assert t.author is not None and t.author.id == str(fake.requester_id)
    assert not t.created_by_agent
    assert t.category == ("Network", "VPN")
    assert t.url == f"{fake.web_url}/front/ticket.form.php?id={tid}"
    assert t.created_at is not None and t.updated_at is not None


def test_ticket_state_is_one_request(fake: FakeGLPI, connector: GLPIConnector) -> None:
    tid = fake.create_ticket(name="VPN down")
    connector.ticket_state(str(tid))  # opens the session
    before = len(fake.request_log)
    assert connector.ticket_state(str(tid)) == "new"
    assert [r.path for r in fake.request_log[before:]] == [f"/Ticket/{tid}"]
    agent = fake.add_user("closer", TECHNICIAN)
    fake.autoclose_delay = 0
    fake.add_solution(tid, agent)
    assert connector.ticket_state(str(tid)) == "closed"


def test_default_email_is_chosen_among_several(fake: FakeGLPI, connector: GLPIConnector) -> None:
    uid = fake.add_user("multi", "self-service", extra_emails=("old@example.org",))
    fake.users[uid].emails = [("old@example.org", False), ("main@example.org", True)]
    t = connector.get_ticket(str(fake.create_ticket(requester=uid)))
    assert t.requester is not None and t.requester.email == "main@example.org"


def test_anonymous_requester_uses_alternative_email(fake: FakeGLPI, connector: GLPIConnector) -> None:
    t = connector.get_ticket(str(fake.create_ticket(requester="anon@example.org")))
    assert t.requester is not None
    assert (t.requester.id, t.requester.email) == ("email:anon@example.org", "anon@example.org")
    assert not t.created_by_agent


def test_ticket_typed_in_by_an_agent_is_created_by_agent(fake: FakeGLPI, connector: GLPIConnector) -> None:
    tech = fake.add_user("tech1", TECHNICIAN, realname="Martin", firstname="Alice")
    t = connector.get_ticket(str(fake.create_ticket(writer=tech)))
    assert t.created_by_agent
    assert t.author is not None and (t.author.id, t.author.name) == (str(tech), "Martin Alice")


@pytest.mark.parametrize(("status", "state"), [(1, "new"), (2, "open"), (3, "open"), (4, "waiting"),
                                               (5, "solved"), (6, "closed")])
def test_status_mapping(fake: FakeGLPI, connector: GLPIConnector, status: int, state: str) -> None:
    assert connector.get_ticket(str(fake.create_ticket(status=status))).state == state


def test_timeline_has_followups_solutions_privacy_and_markers(fake: FakeGLPI, connector: GLPIConnector) -> None:
    fake.set_time("2025-06-01 10:00:00")
    tid = fake.create_ticket(status=2)
    fake.advance(60)
    fake.add_followup(tid, fake.requester_id, "<p>Still broken</p>")
    fake.advance(60)
    fake.add_followup(tid, fake.bot_id, f"<p>Draft</p><p><small>ref {MARKER}</small></p>", is_private=True)
    fake.advance(60)
    fake.add_solution(tid, fake.bot_id, "<p>Reboot</p>")
    t = connector.get_ticket(str(tid))
    assert [(c.kind, c.body, c.is_private) for c in t.comments] == [
        ("comment", "Still broken", False), ("comment", f"Draft\n\nref {MARKER}", True), ("solution", "Reboot", False)]
    assert t.comments[0].author is not None and t.comments[0].author.email == "jdoe@example.org"
    assert t.comments[1].marker == MARKER
    assert t.comment_with_marker(MARKER) is t.comments[1]


def test_missing_ticket_is_not_found(connector: GLPIConnector) -> None:
    from connectors.base import NotFound

    with pytest.raises(NotFound):
        connector.get_ticket("4242")
    with pytest.raises(NotFound):
        connector.get_ticket("not-a-number")


# ---------------------------------------------------------------------------------------- rendering
def test_render_escapes_every_text_and_link() -> None:
    out = render_html(message(
        heading="<b>Hi</b>", paragraphs=["<script>alert(1)</script>", "a & b\nline 2"],
        entries=[SuggestedEntry(title="<i>T</i>", text="x < y")], facts=[("conf<", "0.9>")],
        links=[Link(label="Solved <3", url='https://ai.example/c/T?a=1&b="2"'),
               Link(label="bad", url="javascript:alert(1)")], footer="by <bot>"))
    assert "<script>" not in out and "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert "<b>Hi</b>" not in out and "&lt;b&gt;Hi&lt;/b&gt;" in out
    assert "a &amp; b<br>line 2" in out
    assert '<a href="https://ai.example/c/T?a=1&amp;b=&quot;2&quot;">Solved &lt;3</a>' in out
    assert 'href="javascript' not in out and "bad: javascript:alert(1)" in out
    assert out.endswith(f"<p><small>ref {MARKER}</small></p>")


def test_html_to_text_blocks_links_and_sanitized_input() -> None:
    assert html_to_text("<p>One</p><p>Two <a href='https://x.example/a'>link</a></p><ul><li>a</li></ul>") == (
        "One\n\nTwo link (https://x.example/a)\n\n- a")
    assert html_to_text("&lt;p&gt;Encoded&lt;/p&gt;") == "Encoded"
    assert html_to_text("<script>evil()</script>ok") == "ok"


def test_web_url_is_derived_from_the_api_url() -> None:
    assert derive_web_url("https://glpi.example/glpi/apirest.php/") == "https://glpi.example/glpi"
    assert derive_web_url("https://glpi.example/api.php/v1") == "https://glpi.example"


# ---------------------------------------------------------------------------------------- writing
def test_public_reply_is_escaped_public_and_notifies(fake: FakeGLPI, connector: GLPIConnector) -> None:
    tid = fake.create_ticket(status=2)
    c = connector.post_comment(str(tid), message(paragraphs=["<script>x()</script>"]), private=False)
    [stored] = fake.followups(tid)
    assert stored["is_private"] == 0
    assert "&lt;script&gt;x()&lt;/script&gt;" in stored["content"] and "<script>" not in stored["content"]
    assert fake.notifications == [("add_followup", tid, stored["id"])]
    assert (c.id, c.is_private, c.marker, c.kind) == (f"ITILFollowup/{stored['id']}", False, MARKER, "comment")
    assert "<script>x()</script>" in c.body  # the text, unescaped, as the requester reads it
    assert [f["id"] for f in fake.followups(tid, as_user=fake.requester_id)] == [stored["id"]]


def test_private_note_is_private_silent_and_hidden_from_requester(fake: FakeGLPI, connector: GLPIConnector) -> None:
    tid = fake.create_ticket(status=2)
    c = connector.post_comment(str(tid), message(), private=True)
    [post] = iter_requests(fake, "POST", "/ITILFollowup")
    assert post.json["input"]["is_private"] == 1 and post.json["input"]["_disablenotif"] is True
    assert c.is_private
    assert fake.notifications == []
    assert fake.followups(tid, as_user=fake.requester_id) == []
    assert list(iter_requests(fake, "GET", f"/ITILFollowup/{fake.followups(tid)[0]['id']}")), "read back"


def test_private_note_stored_public_raises_write_not_applied(fake: FakeGLPI, connector: GLPIConnector) -> None:
    fake.drop_privacy = True
    tid = fake.create_ticket(status=2)
    with pytest.raises(WriteNotApplied, match="public"):
        connector.post_comment(str(tid), message(), private=True)


def test_profile_without_followup_rights_gets_permission_denied(fake: FakeGLPI, connector: GLPIConnector) -> None:
    from connectors.base import PermissionDenied

    fake.set_rights(TECHNICIAN, followup=FOLLOWUP_SEEPUBLIC)
    tid = fake.create_ticket(status=2)
    with pytest.raises(PermissionDenied) as err:
        connector.post_comment(str(tid), message(), private=False)
    assert err.value.code == "ERROR_RIGHT_MISSING"  # type: ignore[attr-defined]
    assert fake.followups(tid) == []


def test_close_confirmed_adds_solution_then_approves(fake: FakeGLPI, connector: GLPIConnector) -> None:
    tid = fake.create_ticket(status=2)
    t = connector.close_confirmed(str(tid), message())
    assert t.state == "closed" and fake.ticket(tid)["status"] == 6 and fake.ticket(tid)["closedate"]
    [solution] = fake.solutions(tid)
    assert solution["status"] == 3 and "Restart the print spooler." in solution["content"]
    [close] = [r for r in iter_requests(fake, "POST", "/ITILFollowup")]
    assert close.json["input"]["add_close"] == 1 and close.json["input"]["content"]
    assert [o.kind for o in t.outcomes] == ["solved"]
    assert not t.outcomes[0].by_requester  # the bot approved on the requester's behalf


def test_close_confirmed_on_a_solved_ticket_approves_the_waiting_solution(fake: FakeGLPI,
                                                                          connector: GLPIConnector) -> None:
    tid = fake.create_ticket(status=2)
    fake.add_solution(tid, fake.bot_id, "<p>Agent's own solution</p>")
    t = connector.close_confirmed(str(tid), message())
    assert t.state == "closed"
    assert [s["status"] for s in fake.solutions(tid)] == [3]
    assert not list(iter_requests(fake, "POST", "/ITILSolution"))


def test_close_confirmed_is_idempotent_on_a_closed_ticket(fake: FakeGLPI, connector: GLPIConnector) -> None:
    tid = fake.create_ticket(status=6)
    assert connector.close_confirmed(str(tid), message()).state == "closed"
    assert not [r for r in fake.request_log if r.method == "POST"]


def test_close_confirmed_with_autoclose_zero_skips_add_close(fake: FakeGLPI, connector: GLPIConnector) -> None:
    fake.autoclose_delay = 0
    tid = fake.create_ticket(status=2)
    t = connector.close_confirmed(str(tid), message())
    assert t.state == "closed"
    assert [s["status"] for s in fake.solutions(tid)] == [3]
    assert not list(iter_requests(fake, "POST", "/ITILFollowup"))


def test_close_confirmed_raises_when_ticket_does_not_close(fake: FakeGLPI, connector: GLPIConnector) -> None:
    tid = fake.create_ticket(status=2)
    fake.honour_add_close = False  # inferred, not seen live: the API passing add_close through is unverified
    with pytest.raises(WriteNotApplied, match="not closed"):
        connector.close_confirmed(str(tid), message())


@pytest.mark.parametrize(("assigned", "expected_status"), [(True, 2), (False, 1)])
def test_hand_back_refuses_the_solution_with_a_private_reason(fake: FakeGLPI, connector: GLPIConnector,
                                                              assigned: bool, expected_status: int) -> None:
    tid = fake.create_ticket(status=2, assigned=fake.add_user("tech1", TECHNICIAN) if assigned else None)
    fake.add_solution(tid, fake.bot_id)
    t = connector.hand_back(str(tid), message(paragraphs=["The requester says it did not help."]))
    assert fake.ticket(tid)["status"] == expected_status
    assert t.state == ("open" if assigned else "new")
    assert [s["status"] for s in fake.solutions(tid)] == [4]
    [note] = fake.followups(tid)
    assert note["is_private"] == 1 and "did not help" in note["content"]
    assert fake.followups(tid, as_user=fake.requester_id) == []
    [post] = iter_requests(fake, "POST", "/ITILFollowup")
    assert post.json["input"]["add_reopen"] == 1
    assert [o.kind for o in t.outcomes] == ["not_solved"]


def test_hand_back_on_an_open_ticket_is_a_private_note(fake: FakeGLPI, connector: GLPIConnector) -> None:
    tid = fake.create_ticket(status=2)
    connector.hand_back(str(tid), message())
    [note] = fake.followups(tid)
    assert note["is_private"] == 1 and fake.ticket(tid)["status"] == 2
    assert "add_reopen" not in next(iter_requests(fake, "POST", "/ITILFollowup")).json["input"]


# ---------------------------------------------------------------------------------------- outcomes
def test_requester_approval_in_glpi_is_a_solved_outcome(fake: FakeGLPI, connector: GLPIConnector) -> None:
    tid = fake.create_ticket(status=2)
    fake.add_solution(tid, fake.bot_id)
    fake.approve_solution(tid, fake.requester_id)
    t = connector.get_ticket(str(tid))
    assert t.state == "closed"
    [outcome] = t.outcomes
    assert (outcome.kind, outcome.by_requester, outcome.detail) == ("solved", True, "solution approved")
    assert outcome.at is not None


def test_requester_refusal_carries_the_reason(fake: FakeGLPI, connector: GLPIConnector) -> None:
    fake.set_time("2025-06-01 10:00:00")
    tid = fake.create_ticket(status=2)
    fake.add_solution(tid, fake.bot_id)
    fake.advance(30)
    fake.add_followup(tid, fake.bot_id, "<p>unrelated agent note</p>")
    fake.advance(600)
    fake.refuse_solution(tid, fake.requester_id, "<p>Still cannot print</p>")
    t = connector.get_ticket(str(tid))
    assert t.state == "new"
    [outcome] = t.outcomes
    assert (outcome.kind, outcome.by_requester) == ("not_solved", True)
    assert outcome.detail == "solution refused: Still cannot print"


def test_requester_followup_on_solved_ticket_reopens_it(fake: FakeGLPI, connector: GLPIConnector) -> None:
    """GLPI's trap (ParentStatus): "thanks, it works" as a follow-up *refuses* the solution."""
    tid = fake.create_ticket(status=2)
    fake.add_solution(tid, fake.bot_id)
    fake.add_followup(tid, fake.requester_id, "<p>Thanks, it works!</p>")
    t = connector.get_ticket(str(tid))
    assert t.state == "new"
    assert [(o.kind, o.by_requester, o.detail) for o in t.outcomes] == [
        ("not_solved", True, "solution refused: Thanks, it works!")]


# ---------------------------------------------------------------------------------------- polling
def test_first_poll_sets_the_watermark_without_events(fake: FakeGLPI, connector: GLPIConnector) -> None:
    fake.set_time("2025-06-01 10:00:00")
    fake.create_ticket()
    fake.advance(5)
    fake.create_ticket()
    assert connector.poll(None) == ([], "2025-06-01 10:00:05")


def test_poll_with_overlap_kinds_keys_and_paging(fake: FakeGLPI, connector: GLPIConnector) -> None:
    fake.set_time("2025-06-01 10:00:00")
    old = fake.create_ticket()
    fake.set_time("2025-06-01 11:00:00")
    changed = fake.create_ticket()
    fake.advance(30)
    fake.add_followup(changed, fake.bot_id, "update")  # date_mod 11:00:30 > date 11:00:00
    fake.advance(10)
    new_ids = [fake.create_ticket() for _ in range(60)]  # more than one page of 50
    events, watermark = connector.poll("2025-06-01 11:00:20")
    assert watermark == "2025-06-01 11:00:40"
    by_id = {e.ticket_id: e for e in events}
    assert str(old) not in by_id
    assert len(events) == 61 and len(by_id) == 61
    assert by_id[str(changed)].kind == "updated"
    assert by_id[str(changed)].delivery_key == f"glpi:poll:{changed}:2025-06-01 11:00:30"
    assert {by_id[str(i)].kind for i in new_ids} == {"created"}
    searches = list(iter_requests(fake, "GET", "/search/Ticket"))
    assert len(searches) == 2 and [s.status for s in searches] == [206, 206]
    args = dict(searches[0].args)
    assert args["criteria[0][field]"] == "19" and args["criteria[0][searchtype]"] == "morethan"
    assert args["criteria[0][value]"] == "2025-06-01 10:59:20"  # 60 s overlap
    assert [v for k, v in searches[0].args if k.startswith("forcedisplay")] == ["2", "1", "12", "15", "19"]
    assert (args["sort"], args["order"], args["range"]) == ("19", "ASC", "0-49")
    assert dict(searches[1].args)["range"] == "50-99"
    # The next poll overlaps: same tickets, same keys (de-duplicated downstream).
    again, watermark2 = connector.poll(watermark)
    assert watermark2 == watermark
    assert {e.delivery_key for e in again} <= {e.delivery_key for e in events}


def test_poll_skips_a_bad_row(fake: FakeGLPI, connector: GLPIConnector, caplog: pytest.LogCaptureFixture) -> None:
    fake.set_time("2025-06-01 10:00:00")
    good, bad = fake.create_ticket(), fake.create_ticket()

    def corrupt(row: dict[str, object]) -> dict[str, object]:
        return {**row, "19": "not a date"} if row.get("2") == bad else row

    fake.search_row_hook = corrupt
    with caplog.at_level(logging.WARNING):
        events, watermark = connector.poll("2025-06-01 09:00:00")
    assert [e.ticket_id for e in events] == [str(good)]
    assert watermark == "2025-06-01 10:00:00"
    assert any("glpi_poll_bad_row" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------------------- check()
def _by_name(results: list) -> dict:  # type: ignore[type-arg]
    return {r.name: r for r in results}


def test_check_with_good_credentials(connector: GLPIConnector) -> None:
    results = connector.check()
    assert all(r.ok for r in results), results
    assert {"API reachable", "Session", "Read tickets", "Add follow-ups", "See private follow-ups", "Add solutions",
            "See requesters", "Webhook secret"} == set(_by_name(results))
    assert "connected as 'helpdesk-assist'" in _by_name(results)["Session"].detail
    assert connector.bot_user_id is not None


def test_check_with_a_bad_user_token(fake: FakeGLPI) -> None:
    conn = GLPIConnector(fake.url, "wrong-token", fake.app_token, "s", 60, 5, True, "")
    results = _by_name(conn.check())
    assert results["API reachable"].ok
    assert not results["Session"].ok
    assert "refused the user token" in results["Session"].detail
    assert "Remote access keys" in results["Session"].detail
    assert "wrong-token" not in results["Session"].detail
    conn.close()


def test_check_with_a_missing_app_token(fake: FakeGLPI) -> None:
    conn = GLPIConnector(fake.url, fake.bot_token, "", "s", 60, 5, True, "")
    results = _by_name(conn.check())
    assert not results["Session"].ok
    assert "requires an App-Token" in results["Session"].detail
    assert "Setup > General > API" in results["Session"].detail
    conn.close()


def test_check_when_glpi_is_unreachable() -> None:
    conn = GLPIConnector("http://127.0.0.1:9/apirest.php", "t", "a", "s", 60, 2, True, "")
    [result] = conn.check()
    assert (result.name, result.ok) == ("API reachable", False)
    assert "Cannot reach the GLPI API" in result.detail
    conn.close()


def test_check_with_missing_rights(fake: FakeGLPI, connector: GLPIConnector) -> None:
    fake.set_rights(TECHNICIAN, ticket=1, followup=FOLLOWUP_SEEPUBLIC | FOLLOWUP_ADDMYTICKET, user=0)
    results = _by_name(connector.check())
    for name in ("Read tickets", "Add follow-ups", "See private follow-ups", "Add solutions", "See requesters"):
        assert not results[name].ok, name
        assert "Administration > Profiles > Technician" in results[name].detail
    assert "cannot add follow-ups to all tickets" in results["Add follow-ups"].detail
    assert "cannot solve tickets" in results["Add solutions"].detail


@pytest.mark.parametrize(("poll", "ok", "words"), [(True, True, "Warning: no webhook secret"),
                                                   (False, False, "nothing tells the assistant")])
def test_check_without_webhook_secret(fake: FakeGLPI, poll: bool, ok: bool, words: str) -> None:
    conn = GLPIConnector(fake.url, fake.bot_token, fake.app_token, "", 60, 5, True, "", poll=poll)
    result = _by_name(conn.check())["Webhook secret"]
    assert result.ok is ok and words in result.detail
    conn.close()


def test_hand_back_raises_when_glpi_ignores_add_reopen(fake: FakeGLPI, connector: GLPIConnector) -> None:
    tid = fake.create_ticket(status=2)
    fake.add_solution(tid, fake.bot_id)
    fake.honour_add_close = False
    with pytest.raises(WriteNotApplied, match="still in status 5"):
        connector.hand_back(str(tid), message())


def test_first_poll_on_an_empty_glpi_starts_from_the_beginning(fake: FakeGLPI, connector: GLPIConnector) -> None:
    events, watermark = connector.poll(None)
    assert (events, watermark) == ([], "1970-01-01 00:00:00")
    tid = fake.create_ticket()
    events, _ = connector.poll(watermark)
    assert [(e.ticket_id, e.kind) for e in events] == [(str(tid), "created")]


def test_item7_scope_is_the_tickets_entity_and_only_configured_entities_are_in(fake: FakeGLPI) -> None:
    hr = fake.create_entity("HR")
    tid = fake.create_ticket(entity=hr)
    conn = GLPIConnector(fake.url, fake.bot_token, fake.app_token, entities=(0,))
    ticket = conn.get_ticket(str(tid))
    assert ticket.scope == str(hr)
    assert conn.out_of_scope(ticket) == f"entity id {hr} is not in glpi.entities (0)"
    assert conn.out_of_scope(conn.get_ticket(str(fake.create_ticket()))) is None  # root entity 0: listed
    assert GLPIConnector(fake.url, fake.bot_token, fake.app_token).out_of_scope(ticket) is None
    conn.close()
