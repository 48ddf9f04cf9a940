"""RedmineConnector against the real Redmine 5 of scripts/redmine_up.sh."""

from __future__ import annotations

import uuid

import pytest

from connectors.base import OutgoingMessage, RejectedByHelpdesk, WriteNotApplied

from .conftest import RedmineServer

pytestmark = [pytest.mark.integration]


def _msg(text: str = "Try restarting the print spooler.") -> OutgoingMessage:
    return OutgoingMessage(marker="ha-" + uuid.uuid4().hex[:12], heading="Suggested answer", paragraphs=[text])


def test_get_ticket_with_requester_email(redmine: RedmineServer) -> None:
    issue_id = redmine.create_issue(description="Error 49 on floor 2")
    t = redmine.connector().get_ticket(str(issue_id))
    assert t.requester is not None
    assert (t.requester.name, t.requester.email) == ("Rita Requester", "requester@example.test")
    assert (t.state, t.status_name, t.body, t.category) == ("new", "New", "Error 49 on floor 2", ("Support",))
    assert t.created_by_agent is False
    assert t.url == f"{redmine.url}/issues/{issue_id}"


def test_public_and_private_notes_as_seen_by_requester_and_admin(redmine: RedmineServer) -> None:
    issue_id = redmine.create_issue()
    conn = redmine.connector()
    public, private = _msg("Public suggestion"), _msg("Agent-only draft")
    c1 = conn.post_comment(str(issue_id), public, private=False)
    c2 = conn.post_comment(str(issue_id), private, private=True)
    assert (c1.is_private, c1.marker, c2.is_private, c2.marker) == (False, public.marker, True, private.marker)

    seen_by_requester = " ".join(j["notes"] for j in redmine.issue(issue_id, redmine.requester_key)["journals"])
    assert public.marker in seen_by_requester and private.marker not in seen_by_requester
    admin_journals = redmine.issue(issue_id, redmine.admin_key)["journals"]
    assert [(private.marker in j["notes"], j["private_notes"]) for j in admin_journals] == [
        (False, False),
        (True, True),
    ]

    # A retry of the same message finds the earlier note: nothing is posted twice.
    assert conn.post_comment(str(issue_id), private, private=True).id == c2.id
    assert len(redmine.issue(issue_id, redmine.admin_key)["journals"]) == 2


def test_private_note_without_the_right_is_made_public_by_redmine_and_detected(redmine: RedmineServer) -> None:
    """Redmine's worst trap, live: the agent role lacks 'Set notes as private', Redmine answers 204
    and posts the note PUBLIC. The connector must raise; the requester really can read the note."""
    issue_id = redmine.create_issue()
    msg = _msg("Internal: the toner supplier is late")
    with pytest.raises(WriteNotApplied, match="LEAK") as exc:
        redmine.connector(redmine.agent_key).post_comment(str(issue_id), msg, private=True)
    assert "Set notes as private" in str(exc.value)
    leaked = [j for j in redmine.issue(issue_id, redmine.requester_key)["journals"] if msg.marker in j["notes"]]
    assert len(leaked) == 1 and leaked[0]["private_notes"] is False  # the leak Redmine made


def test_close_confirmed(redmine: RedmineServer) -> None:
    issue_id = redmine.create_issue()
    conn = redmine.connector()
    msg = _msg("Glad it worked, closing.")
    t = conn.close_confirmed(str(issue_id), msg)
    assert (t.state, t.status_name) == ("closed", "Closed")
    assert t.comment_with_marker(msg.marker) is not None
    again = conn.close_confirmed(str(issue_id), _msg("second"))  # idempotent: already closed
    assert again.state == "closed" and len(again.comments) == 1


def test_close_with_a_status_the_workflow_forbids_is_detected(redmine: RedmineServer) -> None:
    """The agent role has the Developer's workflow: no transition to Rejected. Redmine answers 204."""
    issue_id = redmine.create_issue()
    conn = redmine.connector(redmine.agent_key, closed_status="Rejected")
    with pytest.raises(WriteNotApplied, match="workflow does not allow New -> Rejected"):
        conn.close_confirmed(str(issue_id), _msg())
    assert redmine.issue(issue_id, redmine.admin_key)["status"]["name"] == "New"


def test_hand_back_reopens_a_resolved_issue(redmine: RedmineServer) -> None:
    issue_id = redmine.create_issue()
    redmine.call(
        "PUT",
        f"/issues/{issue_id}.json",
        redmine.admin_key,
        json={"issue": {"status_id": redmine.status_id("Resolved")}},
    )
    conn = redmine.connector(reopen_status="In Progress")
    assert conn.get_ticket(str(issue_id)).state == "solved"
    msg = _msg("The requester says it did not help.")
    t = conn.hand_back(str(issue_id), msg)
    assert (t.state, t.status_name) == ("open", "In Progress")
    note = t.comment_with_marker(msg.marker)
    assert note is not None and note.is_private
    assert msg.marker not in str(redmine.issue(issue_id, redmine.requester_key)["journals"])


def test_requester_closing_and_refusing_are_outcomes(redmine: RedmineServer) -> None:
    issue_id = redmine.create_issue()
    resolved, feedback, closed = (redmine.status_id(n) for n in ("Resolved", "Feedback", "Closed"))
    redmine.call("PUT", f"/issues/{issue_id}.json", redmine.admin_key, json={"issue": {"status_id": resolved}})
    redmine.call(
        "PUT",
        f"/issues/{issue_id}.json",
        redmine.requester_key,
        json={"issue": {"status_id": feedback, "notes": "Still broken"}},
    )
    redmine.call("PUT", f"/issues/{issue_id}.json", redmine.admin_key, json={"issue": {"status_id": resolved}})
    redmine.call("PUT", f"/issues/{issue_id}.json", redmine.requester_key, json={"issue": {"status_id": closed}})
    t = redmine.connector().get_ticket(str(issue_id))
    assert t.state == "closed"
    assert [(o.kind, o.by_requester, o.detail) for o in t.outcomes] == [
        ("not_solved", True, "Still broken"),
        ("solved", True, "status Resolved -> Closed"),
    ]


def test_poll_finds_created_and_updated_issues(redmine: RedmineServer) -> None:
    conn = redmine.connector(projects=["helpdesk"])
    _, watermark = conn.poll(None)
    assert watermark is not None
    old = redmine.create_issue()  # may share the watermark's second: the overlap catches it
    events, watermark2 = conn.poll(watermark)
    assert str(old) in {e.ticket_id for e in events if e.kind == "created"}
    redmine.call("PUT", f"/issues/{old}.json", redmine.requester_key, json={"issue": {"notes": "more info"}})
    new = redmine.create_issue()
    events, watermark3 = conn.poll(watermark2)
    assert watermark3 is not None and watermark2 is not None and watermark3 >= watermark2
    kinds = {(e.ticket_id, e.kind) for e in events}
    assert (str(new), "created") in kinds
    # Redmine stores seconds: a note in the same second as the creation leaves created_on == updated_on.
    assert (str(old), "updated") in kinds or (str(old), "created") in kinds
    assert all(e.delivery_key.startswith(f"redmine:poll:{e.ticket_id}:") for e in events)


def test_check_admin_all_ok(redmine: RedmineServer) -> None:
    results = redmine.connector(projects=["helpdesk"], plugin_token="t").check()
    assert [r for r in results if not r.ok] == []


def test_check_agent_names_missing_rights(redmine: RedmineServer) -> None:
    results = {r.name: r for r in redmine.connector(redmine.agent_key, projects=["helpdesk"], polling=True).check()}
    assert not results["right:set_notes_private"].ok
    assert "set_notes_private" in results["right:set_notes_private"].detail
    assert "helpdesk" in results["right:set_notes_private"].detail
    assert not results["right:view_private_notes"].ok
    assert results["right:add_issue_notes"].ok and results["right:edit_issues"].ok
    assert results["api_key"].ok and "agent" in results["api_key"].detail


def test_check_workflow_on_a_live_issue(redmine: RedmineServer) -> None:
    redmine.create_issue()
    assert {r.name: r for r in redmine.connector(redmine.agent_key, projects=["helpdesk"]).check()}["workflow"].ok
    agent_rejected = redmine.connector(redmine.agent_key, projects=["helpdesk"], closed_status="Rejected")
    workflow = {r.name: r for r in agent_rejected.check()}["workflow"]
    assert not workflow.ok and "Rejected" in workflow.detail


def test_check_bad_key(redmine: RedmineServer) -> None:
    results = {r.name: r for r in redmine.connector("0" * 40).check()}
    assert not results["api_key"].ok


def test_switch_user_and_validation_errors(redmine: RedmineServer) -> None:
    client = redmine.connector().client
    assert client.get("/users/current.json", switch_user="requester")["user"]["login"] == "requester"
    with pytest.raises(RejectedByHelpdesk, match="412"):
        client.get("/users/current.json", switch_user="nobody-" + uuid.uuid4().hex[:6])
    with pytest.raises(RejectedByHelpdesk, match="Subject cannot be blank"):
        client.post("/issues.json", {"issue": {"project_id": redmine.project, "subject": ""}})
