"""RedmineClient: URL, headers and body on the wire; HTTP errors mapped to the connector errors."""

from __future__ import annotations

import pytest
import requests
import responses
from responses import matchers

from connectors.base import (
    AuthenticationError,
    ConnectorError,
    NotFound,
    PermissionDenied,
    RejectedByHelpdesk,
    TransientConnectorError,
)
from connectors.redmine.client import RedmineClient

from .conftest import KEY, URL


@pytest.fixture
def client() -> RedmineClient:
    return RedmineClient(URL + "/", KEY, timeout_s=3)


def test_get_sends_key_header_and_params(client: RedmineClient, rsps: responses.RequestsMock) -> None:
    rsps.get(
        f"{URL}/issues/7.json",
        json={"issue": {"id": 7}},
        match=[
            matchers.header_matcher({"X-Redmine-API-Key": KEY, "Accept": "application/json"}),
            matchers.query_param_matcher({"include": "journals"}),
        ],
    )
    assert client.get("/issues/7.json", {"include": "journals"}) == {"issue": {"id": 7}}
    assert "X-Skip-Webhooks" not in rsps.calls[0].request.headers
    assert "key=" not in (rsps.calls[0].request.url or "")


def test_put_returns_none_on_204_and_marks_own_writes(client: RedmineClient, rsps: responses.RequestsMock) -> None:
    rsps.put(
        f"{URL}/issues/7.json",
        status=204,
        body=b"",
        match=[
            matchers.header_matcher({"X-Redmine-API-Key": KEY, "X-Skip-Webhooks": "1"}),
            matchers.json_params_matcher({"issue": {"notes": "hi", "private_notes": True}}),
        ],
    )
    assert client.put("/issues/7.json", {"issue": {"notes": "hi", "private_notes": True}}) is None


def test_put_never_parses_the_body(client: RedmineClient, rsps: responses.RequestsMock) -> None:
    rsps.put(f"{URL}/issues/7.json", status=200, body=b"not json at all")
    client.put("/issues/7.json", {"issue": {}})


def test_switch_user_header(client: RedmineClient, rsps: responses.RequestsMock) -> None:
    rsps.get(f"{URL}/users/current.json", json={}, match=[matchers.header_matcher({"X-Redmine-Switch-User": "rita"})])
    client.get("/users/current.json", switch_user="rita")


def test_post_returns_created_json(client: RedmineClient, rsps: responses.RequestsMock) -> None:
    rsps.post(f"{URL}/issues.json", status=201, json={"issue": {"id": 9}})
    assert client.post("/issues.json", {"issue": {"subject": "x"}}) == {"issue": {"id": 9}}


@pytest.mark.parametrize(
    ("status", "error", "words"),
    [
        (401, AuthenticationError, "API key"),
        (403, PermissionDenied, "Enable REST web service"),
        (404, NotFound, "not visible"),
        (412, RejectedByHelpdesk, "switch-user"),
        (429, TransientConnectorError, "429"),
        (500, TransientConnectorError, "500"),
        (503, TransientConnectorError, "503"),
        (418, RejectedByHelpdesk, "418"),
    ],
)
def test_http_errors_are_mapped(
    client: RedmineClient, rsps: responses.RequestsMock, status: int, error: type[Exception], words: str
) -> None:
    rsps.get(f"{URL}/issues/7.json", status=status, body=b"")
    with pytest.raises(error, match=words):
        client.get("/issues/7.json")


def test_422_carries_redmine_messages(client: RedmineClient, rsps: responses.RequestsMock) -> None:
    rsps.put(f"{URL}/issues/7.json", status=422, json={"errors": ["Subject cannot be blank", "Tracker is invalid"]})
    with pytest.raises(RejectedByHelpdesk, match="Subject cannot be blank; Tracker is invalid"):
        client.put("/issues/7.json", {"issue": {"subject": ""}})


def test_timeout_and_connection_errors_are_transient(client: RedmineClient, rsps: responses.RequestsMock) -> None:
    rsps.get(f"{URL}/a.json", body=requests.Timeout("slow"))
    rsps.get(f"{URL}/b.json", body=requests.ConnectionError("refused"))
    with pytest.raises(TransientConnectorError, match="within 3 s"):
        client.get("/a.json")
    with pytest.raises(TransientConnectorError, match="cannot reach"):
        client.get("/b.json")


def test_non_json_answer_is_a_connector_error(client: RedmineClient, rsps: responses.RequestsMock) -> None:
    rsps.get(f"{URL}/issues/7.json", body=b"<html>login</html>")
    with pytest.raises(ConnectorError, match="not JSON"):
        client.get("/issues/7.json")


def test_key_never_in_errors_logs_or_repr(
    client: RedmineClient, rsps: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    rsps.get(f"{URL}/issues/7.json", status=401)
    with pytest.raises(AuthenticationError) as exc:
        client.get("/issues/7.json")
    assert KEY not in str(exc.value)
    assert KEY not in caplog.text
    assert KEY not in repr(client)


def test_server_date_is_remembered(client: RedmineClient, rsps: responses.RequestsMock) -> None:
    rsps.get(f"{URL}/x.json", json={}, headers={"Date": "Tue, 24 Nov 2026 03:00:00 GMT"})
    client.get("/x.json")
    assert client.last_server_time is not None
    assert client.last_server_time.isoformat() == "2026-11-24T03:00:00+00:00"
