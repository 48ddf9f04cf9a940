"""RedmineConnector.create_ticket against recorded exchanges: the request Redmine gets, and errors mapped.

The behaviour itself (author = the person, 412, 422 for a non-member, the ignored switch for a
non-admin key) is tested against the real Redmine in tests/integration/redmine/test_create_live.py.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest
import responses

from connectors.base import NewTicket, NotFound, Person, RejectedByHelpdesk, TransientConnectorError
from connectors.redmine import RedmineConnector

from .conftest import KEY, URL, add_lookups, body_of, issue

MARKER = "ha-0000000c0de1"
PERSON = Person(id="5", login="requester", name="Rita Requester")


def new_ticket(**kw: object) -> NewTicket:
    base: dict[str, object] = {"subject": "Printer", "body": "Error *49* <b>now</b>", "requester": PERSON,
                               "marker": MARKER}
    base.update(kw)
    return NewTicket.model_validate(base)


@pytest.fixture
def creator() -> RedmineConnector:
    return RedmineConnector(URL, KEY, create_project="helpdesk", text_formatting="common_mark")


def test_the_post_carries_the_switch_header_and_the_escaped_description(
        creator: RedmineConnector, rsps: responses.RequestsMock) -> None:
    add_lookups(rsps)  # /issues.json answers "none yet": nothing to reuse
    rsps.post(f"{URL}/issues.json", json=issue(), status=201)
    rsps.get(f"{URL}/issues/7.json", json=issue())
    ticket = creator.create_ticket(new_ticket())
    assert ticket.id == "7"

    [lookup] = [c for c in rsps.calls if c.request.method == "GET" and urlparse(c.request.url).path == "/issues.json"]
    query = parse_qs(urlparse(lookup.request.url).query)
    assert query == {"status_id": ["*"], "author_id": ["5"], "description": [f"~{MARKER}"], "sort": ["id:desc"],
                     "limit": ["10"], "project_id": ["helpdesk"]}
    [post] = [c for c in rsps.calls if c.request.method == "POST"]
    assert post.request.headers["X-Redmine-Switch-User"] == "requester"
    assert post.request.headers["X-Redmine-API-Key"] == KEY
    fields = body_of(post)["issue"]
    assert (fields["project_id"], fields["subject"]) == ("helpdesk", "Printer")
    assert "tracker_id" not in fields
    assert fields["description"] == "Error \\*49\\* &lt;b&gt;now&lt;/b&gt;\n\nref " + MARKER


def test_no_project_configured_is_refused_before_any_call(rsps: responses.RequestsMock) -> None:
    with pytest.raises(RejectedByHelpdesk, match=r"redmine\.create_project is not set"):
        RedmineConnector(URL, KEY).create_ticket(new_ticket())
    assert not rsps.calls


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_an_outage_is_transient(creator: RedmineConnector, rsps: responses.RequestsMock, status: int) -> None:
    add_lookups(rsps)
    rsps.post(f"{URL}/issues.json", status=status)
    with pytest.raises(TransientConnectorError):
        creator.create_ticket(new_ticket())


def test_412_names_the_login(creator: RedmineConnector, rsps: responses.RequestsMock) -> None:
    add_lookups(rsps)
    rsps.post(f"{URL}/issues.json", status=412)
    with pytest.raises(NotFound, match="no active user 'requester'"):
        creator.create_ticket(new_ticket())


def test_a_missing_login_is_looked_up_by_id(creator: RedmineConnector, rsps: responses.RequestsMock) -> None:
    add_lookups(rsps)
    rsps.post(f"{URL}/issues.json", json=issue(), status=201)
    rsps.get(f"{URL}/issues/7.json", json=issue())
    creator.create_ticket(new_ticket(requester=Person(id="5")))
    [post] = [c for c in rsps.calls if c.request.method == "POST"]
    assert post.request.headers["X-Redmine-Switch-User"] == "requester"
