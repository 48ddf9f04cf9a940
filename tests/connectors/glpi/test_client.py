"""GLPIClient: the wire, against the fake GLPI and against recorded exchanges (``responses``)."""

from __future__ import annotations

import json
import logging

import pytest
import requests
import responses

from connectors.base import (
    AuthenticationError,
    NotFound,
    PermissionDenied,
    RejectedByHelpdesk,
    TransientConnectorError,
)
from connectors.glpi.client import GLPIClient
from tests.fakes.glpi_server import FakeGLPI, iter_requests

BASE = "https://glpi.example/apirest.php"


def test_init_session_sends_user_token_and_app_token(fake: FakeGLPI) -> None:
    client = GLPIClient(fake.url, fake.bot_token, fake.app_token)
    token = client.init_session()
    sent = fake.request_log[-1]
    assert (sent.method, sent.path) == ("GET", "/initSession")
    assert sent.headers["Authorization"] == f"user_token {fake.bot_token}"
    assert sent.headers["App-Token"] == fake.app_token
    assert "Session-Token" not in sent.headers
    assert fake.sessions[token] == fake.bot_id
    client.close()


def test_every_call_sends_session_token_app_token_and_raw_content_header(fake: FakeGLPI) -> None:
    tid = fake.create_ticket()
    client = GLPIClient(fake.url, fake.bot_token, fake.app_token)
    client.get_item("Ticket", tid)
    call = next(iter_requests(fake, "GET", f"/Ticket/{tid}"))
    assert call.headers["Session-Token"] in fake.sessions
    assert call.headers["App-Token"] == fake.app_token
    assert call.headers["X-GLPI-Sanitized-Content"] == "false"
    assert "Authorization" not in call.headers
    client.close()


def test_add_posts_input_object_and_returns_new_id(fake: FakeGLPI) -> None:
    tid = fake.create_ticket()
    client = GLPIClient(fake.url, fake.bot_token, fake.app_token)
    new_id = client.add("ITILFollowup", {"itemtype": "Ticket", "items_id": tid, "content": "<p>hi</p>"})
    call = next(iter_requests(fake, "POST", "/ITILFollowup"))
    assert call.json == {"input": {"itemtype": "Ticket", "items_id": tid, "content": "<p>hi</p>"}}
    assert call.headers["Content-Type"] == "application/json"
    assert [f["id"] for f in fake.followups(tid)] == [new_id]
    client.close()


def test_expired_session_is_reinitialised_once_and_the_call_retried(fake: FakeGLPI) -> None:
    tid = fake.create_ticket()
    client = GLPIClient(fake.url, fake.bot_token, fake.app_token)
    client.get_item("Ticket", tid)
    fake.expire_sessions()
    assert client.get_item("Ticket", tid)["id"] == tid
    assert [r.path for r in fake.request_log] == ["/initSession", f"/Ticket/{tid}", f"/Ticket/{tid}",
                                                  "/initSession", f"/Ticket/{tid}"]
    assert [r.status for r in fake.request_log][2] == 401
    client.close()


def test_second_401_after_reinit_is_an_authentication_error(fake: FakeGLPI) -> None:
    tid = fake.create_ticket()
    client = GLPIClient(fake.url, fake.bot_token, fake.app_token)
    client.init_session()
    fake.fail_next(401, "ERROR_SESSION_TOKEN_INVALID", "session_token seems invalid", times=2,
                   path_contains="/Ticket")
    with pytest.raises(AuthenticationError) as err:
        client.get_item("Ticket", tid)
    assert err.value.code == "ERROR_SESSION_TOKEN_INVALID"  # type: ignore[attr-defined]
    assert sum(1 for r in fake.request_log if r.path == "/initSession") == 2
    client.close()


def test_bad_user_token_is_authentication_error_with_glpi_code(fake: FakeGLPI) -> None:
    client = GLPIClient(fake.url, "not-a-token", fake.app_token)
    with pytest.raises(AuthenticationError) as err:
        client.init_session()
    assert err.value.code == "ERROR_GLPI_LOGIN_USER_TOKEN"  # type: ignore[attr-defined]
    client.close()


@pytest.mark.parametrize(("app_token", "code"), [("", "ERROR_APP_TOKEN_PARAMETERS_MISSING"),
                                                 ("wrong", "ERROR_WRONG_APP_TOKEN_PARAMETER")])
def test_app_token_problems_are_authentication_errors(fake: FakeGLPI, app_token: str, code: str) -> None:
    client = GLPIClient(fake.url, fake.bot_token, app_token)
    with pytest.raises(AuthenticationError) as err:
        client.init_session()
    assert err.value.code == code  # type: ignore[attr-defined]
    client.close()


def test_403_404_and_glpi_add_refusal_are_mapped(fake: FakeGLPI) -> None:
    requester = GLPIClient(fake.url, fake.requester_token, fake.app_token)
    others = fake.create_ticket(requester=fake.add_user("other", "self-service"))
    with pytest.raises(PermissionDenied) as denied:
        requester.get_item("Ticket", others)
    assert denied.value.code == "ERROR_RIGHT_MISSING"  # type: ignore[attr-defined]
    with pytest.raises(NotFound) as missing:
        requester.get_item("Ticket", 999)
    assert missing.value.code == "ERROR_ITEM_NOT_FOUND"  # type: ignore[attr-defined]
    tid = fake.create_ticket(status=5)
    bot = GLPIClient(fake.url, fake.bot_token, fake.app_token)
    with pytest.raises(RejectedByHelpdesk) as refused:
        bot.add("ITILSolution", {"itemtype": "Ticket", "items_id": tid, "content": "x"})
    assert refused.value.code == "ERROR_GLPI_ADD"  # type: ignore[attr-defined]
    assert "already solved" in str(refused.value)
    requester.close()
    bot.close()


@pytest.mark.parametrize("status", [429, 500, 503])
def test_429_and_5xx_are_transient(fake: FakeGLPI, status: int) -> None:
    client = GLPIClient(fake.url, fake.bot_token, fake.app_token)
    client.init_session()
    fake.fail_next(status, "ERROR", "busy")
    with pytest.raises(TransientConnectorError) as err:
        client.get_item("Ticket", 1)
    assert err.value.transient
    client.close()


def test_connection_refused_is_transient() -> None:
    client = GLPIClient("http://127.0.0.1:9/apirest.php", "t", "a", timeout_s=2)
    with pytest.raises(TransientConnectorError, match="unreachable"):
        client.init_session()
    client.close()


@responses.activate
def test_timeout_is_transient() -> None:
    responses.get(f"{BASE}/initSession", body=requests.Timeout("slow"))
    client = GLPIClient(BASE, "t", "a", timeout_s=1)
    with pytest.raises(TransientConnectorError, match="did not answer"):
        client.init_session()


@responses.activate
def test_recorded_exchange_url_headers_body_and_kill_session() -> None:
    responses.get(f"{BASE}/initSession", json={"session_token": "s1"})
    responses.post(f"{BASE}/ITILFollowup", json={"id": 15, "message": ""}, status=201)
    responses.get(f"{BASE}/killSession", json=True)
    client = GLPIClient(BASE + "/", "utok", "atok")
    assert client.add("ITILFollowup", {"itemtype": "Ticket", "items_id": 3, "content": "c"}) == 15
    client.close()
    init, post, kill = responses.calls
    assert init.request.headers["Authorization"] == "user_token utok"
    assert post.request.url == f"{BASE}/ITILFollowup"
    assert post.request.headers["Session-Token"] == "s1"
    assert post.request.headers["App-Token"] == "atok"
    assert json.loads(post.request.body or b"") == {"input": {"itemtype": "Ticket", "items_id": 3, "content": "c"}}
    assert kill.request.headers["Session-Token"] == "s1"


@responses.activate
def test_error_message_keeps_glpi_text_without_doc_tail() -> None:
    responses.get(f"{BASE}/initSession", json={"session_token": "s1"})
    responses.post(f"{BASE}/ITILFollowup", status=400, json=[
        "ERROR_GLPI_ADD", "You can't add a followup without description; view documentation in your browser at x"])
    client = GLPIClient(BASE, "utok", "atok")
    with pytest.raises(RejectedByHelpdesk) as err:
        client.add("ITILFollowup", {"itemtype": "Ticket", "items_id": 3, "content": ""})
    assert "without description" in str(err.value)
    assert "view documentation" not in str(err.value)


def test_tokens_never_appear_in_logs(fake: FakeGLPI, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tid = fake.create_ticket()
    client = GLPIClient(fake.url, fake.bot_token, fake.app_token)
    client.get_item("Ticket", tid)
    fake.expire_sessions()
    client.get_item("Ticket", tid)
    bad = GLPIClient(fake.url, "secret-user-token-xyz", "secret-app-token-xyz")
    with pytest.raises(AuthenticationError):
        bad.init_session()
    client.close()
    bad.close()
    secrets = [fake.bot_token, fake.app_token, "secret-user-token-xyz", "secret-app-token-xyz",
               *(r.headers.get("Session-Token", "") for r in fake.request_log if r.headers.get("Session-Token"))]
    assert caplog.records, "the client logs its calls"
    dumped = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for secret in secrets:
        assert secret not in dumped


def test_subitems_are_paged_past_glpis_default_range(fake: FakeGLPI) -> None:
    tid = fake.create_ticket()
    for i in range(130):
        fake.add_followup(tid, fake.bot_id, f"note {i}")
    client = GLPIClient(fake.url, fake.bot_token, fake.app_token)
    rows = client.get_subitems("Ticket", tid, "ITILFollowup")
    assert [r["content"] for r in rows] == [f"note {i}" for i in range(130)]
    assert [r.status for r in fake.request_log if r.path.endswith("/ITILFollowup")] == [206, 206]
    client.close()
