"""Redmine webhooks: one test per supported event on its captured-shape fixture, and authentication."""

from __future__ import annotations

import hashlib
import json

import pytest

from connectors.base import MalformedPayload, SignatureInvalid, SignatureMissing
from connectors.redmine import RedmineConnector
from connectors.redmine.webhook import IGNORED_EVENT_PREFIXES, SUPPORTED_EVENTS, signature

from .conftest import FIXTURES, URL, fixture_bytes


def _fixture_name(event: str) -> str:
    return event.replace(".", "__") + ".json"


def test_every_supported_event_has_a_fixture() -> None:
    missing = [e for e in SUPPORTED_EVENTS if not (FIXTURES / _fixture_name(e)).is_file()]
    assert missing == []


def test_every_fixture_is_a_supported_or_ignored_event() -> None:
    for path in FIXTURES.glob("*.json"):
        event = path.name.removesuffix(".json").split("__")
        name = f"{event[0]}.{event[1]}"
        assert name in SUPPORTED_EVENTS or name.startswith(IGNORED_EVENT_PREFIXES), path.name


@pytest.mark.parametrize(
    ("fixture", "kind", "actor", "vendor_event"),
    [
        ("issue__created.json", "created", "5", "issue.created"),
        ("issue__updated.json", "comment", "5", "issue.updated"),
        ("issue__updated__status.json", "updated", "1", "issue.updated"),
        ("issue__deleted.json", "deleted", None, "issue.deleted"),
        ("plugin__opened.json", "created", "5", "plugin.opened"),
        ("plugin__updated.json", "comment", "5", "plugin.updated"),
    ],
)
def test_supported_event(
    connector: RedmineConnector, fixture: str, kind: str, actor: str | None, vendor_event: str
) -> None:
    body = fixture_bytes(fixture)
    (event,) = connector.parse_webhook({}, body)
    assert event.source == "redmine"
    assert event.ticket_id == "6"
    assert event.kind == kind
    assert event.actor_id == actor
    assert event.vendor_event == vendor_event
    assert event.delivery_key == "redmine:" + hashlib.sha256(body).hexdigest()
    assert event.occurred_at is not None


def test_ignored_news_event_gives_no_event(connector: RedmineConnector, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="connectors.redmine.webhook.ignored")
    assert connector.parse_webhook({}, fixture_bytes("news__created.json")) == []
    assert "news.created" in caplog.text


@pytest.mark.parametrize("event", ["time_entry.created", "wiki_page.updated", "version.deleted", "issue.archived"])
def test_other_known_or_unknown_events_are_ignored(connector: RedmineConnector, event: str) -> None:
    body = json.dumps({"type": event, "timestamp": "2026-11-24T03:00:00Z", "data": {}}).encode()
    assert connector.parse_webhook({}, body) == []


def test_unknown_plugin_action_is_ignored(connector: RedmineConnector) -> None:
    data = json.loads(fixture_bytes("plugin__opened.json"))
    data["payload"]["action"] = "closed"
    assert connector.parse_webhook({}, json.dumps(data).encode()) == []


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'{"hello": 1}', b'{"type": "issue.created", "data": {}}', b'{"payload": {"action": 1}}'],
)
def test_malformed_bodies(connector: RedmineConnector, body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        connector.parse_webhook({}, body)


def test_same_body_same_delivery_key(connector: RedmineConnector) -> None:
    body = fixture_bytes("issue__updated.json")
    assert connector.parse_webhook({}, body)[0].delivery_key == connector.parse_webhook({}, body)[0].delivery_key


# -- authentication ---------------------------------------------------------------------------------


def test_native_signature_accepted(connector: RedmineConnector) -> None:
    body = fixture_bytes("issue__created.json")
    connector.authenticate({"X-Redmine-Signature-256": signature("s3cret", body)}, body, {})
    connector.authenticate(
        {"x-redmine-signature-256": signature("s3cret", body).upper().replace("SHA256", "sha256")}, body, {}
    )


def test_signature_is_hmac_sha256_of_the_raw_body() -> None:
    expected = "sha256=" + __import__("hmac").new(b"k", b"{}", "sha256").hexdigest()
    assert signature("k", b"{}") == expected


def test_bad_signature_401(connector: RedmineConnector) -> None:
    body = fixture_bytes("issue__created.json")
    with pytest.raises(SignatureInvalid) as exc:
        connector.authenticate({"X-Redmine-Signature-256": signature("other", body)}, body, {})
    assert exc.value.status == 401


def test_signature_over_a_changed_body_401(connector: RedmineConnector) -> None:
    body = fixture_bytes("issue__created.json")
    sig = signature("s3cret", body)
    with pytest.raises(SignatureInvalid):
        connector.authenticate({"X-Redmine-Signature-256": sig}, body + b" ", {})


def test_missing_credentials_400(connector: RedmineConnector) -> None:
    with pytest.raises(SignatureMissing) as exc:
        connector.authenticate({}, fixture_bytes("issue__created.json"), {})
    assert exc.value.status == 400
    assert "X-Redmine-Signature-256" in str(exc.value)


def test_plugin_token_in_query_or_header(connector: RedmineConnector) -> None:
    body = fixture_bytes("plugin__opened.json")
    connector.authenticate({}, body, {"token": "t0ken"})
    connector.authenticate({"X-Helpdesk-Assist-Token": "t0ken"}, body, {})


@pytest.mark.parametrize(("headers", "args"), [({}, {"token": "nope"}), ({"X-Helpdesk-Assist-Token": "t0ke"}, {})])
def test_wrong_plugin_token_401(connector: RedmineConnector, headers: dict[str, str], args: dict[str, str]) -> None:
    with pytest.raises(SignatureInvalid):
        connector.authenticate(headers, fixture_bytes("plugin__opened.json"), args)


def test_nothing_configured_refuses_everything() -> None:
    bare = RedmineConnector(URL, "k")
    body = fixture_bytes("issue__created.json")
    with pytest.raises(SignatureInvalid, match="not configured"):
        bare.authenticate({"X-Redmine-Signature-256": signature("", body)}, body, {})
    with pytest.raises(SignatureInvalid, match="not configured"):
        bare.authenticate({}, body, {"token": ""})


def test_signed_delivery_without_secret_configured() -> None:
    only_plugin = RedmineConnector(URL, "k", plugin_token="t0ken")
    body = fixture_bytes("issue__created.json")
    with pytest.raises(SignatureInvalid, match="webhook_secret is not set"):
        only_plugin.authenticate({"X-Redmine-Signature-256": signature("x", body)}, body, {})


def test_token_without_plugin_token_configured() -> None:
    only_native = RedmineConnector(URL, "k", webhook_secret="s")
    with pytest.raises(SignatureInvalid, match="plugin_token is not set"):
        only_native.authenticate({}, b"{}", {"token": "anything"})
