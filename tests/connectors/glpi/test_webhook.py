"""GLPI 11 webhooks: authentication on raw bytes, the crc challenge, and one test per supported event.

The fixtures in tests/fixtures/glpi/ have the shape GLPI 11 sends with the default payload: built
from GLPI 11's HL schemas and Webhook.php (via tests/fakes/glpi_server.py, then frozen), not
captured from a live GLPI 11, which cannot run here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from pathlib import Path

import pytest

from connectors.base import ChallengeRefused, MalformedPayload, SignatureInvalid, SignatureMissing
from connectors.glpi import SUPPORTED_EVENTS, GLPIConnector
from connectors.glpi.payloads import WebhookEnvelope
from connectors.glpi.webhook import answer_cra_challenge, infer_itemtype
from tests.connectors.glpi.conftest import SECRET
from tests.fakes.glpi_server import FakeGLPI

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "glpi"


def fixture_name(vendor_event: str) -> str:
    itemtype, event = vendor_event.split("/")
    return f"{itemtype.lower()}__{event}.json"


def signed(body: bytes, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    sig = hmac.new(secret.encode(), body + ts.encode(), hashlib.sha256).hexdigest()
    return {"X-GLPI-signature": sig, "X-GLPI-timestamp": ts}


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_every_supported_event_has_a_fixture() -> None:
    missing = [e for e in SUPPORTED_EVENTS if not (FIXTURES / fixture_name(e)).is_file()]
    assert not missing, f"add fixtures for {missing}"


# ---------------------------------------------------------------------------------------- one test per fixture
def _parse_fixture(connector: GLPIConnector, name: str) -> list:  # type: ignore[type-arg]
    body = load(name)
    headers = signed(body)
    connector.authenticate(headers, body, {})
    return connector.parse_webhook(headers, body)


def test_ticket_new(connector: GLPIConnector) -> None:
    [e] = _parse_fixture(connector, "ticket__new.json")
    assert (e.source, e.ticket_id, e.kind, e.vendor_event, e.actor_id) == ("glpi", "78", "created", "Ticket/new", None)
    assert e.occurred_at is not None and e.occurred_at.isoformat() == "2025-06-02T09:14:05+00:00"


def test_ticket_update(connector: GLPIConnector) -> None:
    [e] = _parse_fixture(connector, "ticket__update.json")
    assert (e.ticket_id, e.kind, e.vendor_event) == ("78", "updated", "Ticket/update")


def test_ticket_delete(connector: GLPIConnector) -> None:
    [e] = _parse_fixture(connector, "ticket__delete.json")
    assert (e.ticket_id, e.kind, e.vendor_event) == ("78", "deleted", "Ticket/delete")


def test_itilfollowup_new(connector: GLPIConnector) -> None:
    [e] = _parse_fixture(connector, "itilfollowup__new.json")
    assert (e.ticket_id, e.kind, e.vendor_event, e.actor_id) == ("78", "comment", "ITILFollowup/new", "3")


def test_itilfollowup_new_private_is_still_an_event(connector: GLPIConnector) -> None:
    """Private follow-ups are in the payload (rendered as system): an event, re-fetched downstream."""
    [e] = _parse_fixture(connector, "itilfollowup__new__private.json")
    assert (e.ticket_id, e.kind, e.actor_id) == ("78", "comment", "4")


def test_itilsolution_new(connector: GLPIConnector) -> None:
    [e] = _parse_fixture(connector, "itilsolution__new.json")
    assert (e.ticket_id, e.kind, e.vendor_event, e.actor_id) == ("78", "solution", "ITILSolution/new", "4")


def test_itilsolution_update(connector: GLPIConnector) -> None:
    [e] = _parse_fixture(connector, "itilsolution__update.json")
    assert (e.ticket_id, e.kind, e.vendor_event) == ("78", "solution", "ITILSolution/update")


def test_computer_new_is_ignored_and_logged(connector: GLPIConnector, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="connectors.glpi.webhook.unsupported"):
        assert _parse_fixture(connector, "computer__new.json") == []
    assert any("glpi_webhook_ignored" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------------------- itemtype inference
@pytest.mark.parametrize(("name", "itemtype"), [
    ("ticket__new.json", "Ticket"), ("itilfollowup__new.json", "ITILFollowup"),
    ("itilsolution__new.json", "ITILSolution"), ("computer__new.json", None)])
def test_itemtype_is_inferred_from_the_hl_shape(name: str, itemtype: str | None) -> None:
    assert infer_itemtype(WebhookEnvelope.model_validate_json(load(name))) == itemtype


def test_explicit_itemtype_of_a_custom_payload_wins(connector: GLPIConnector) -> None:
    body = json.dumps({"itemtype": "ITILFollowup", "event": "new",
                       "item": {"id": 5, "itemtype": "Ticket", "items_id": 9, "content": "x"}}).encode()
    [e] = connector.parse_webhook(signed(body), body)
    assert (e.ticket_id, e.kind) == ("9", "comment")


def test_followup_on_a_change_is_ignored(connector: GLPIConnector) -> None:
    data = json.loads(load("itilfollowup__new.json"))
    data["item"]["itemtype"] = "Change"
    body = json.dumps(data).encode()
    assert connector.parse_webhook(signed(body), body) == []


def test_unknown_event_on_a_ticket_is_ignored(connector: GLPIConnector) -> None:
    data = json.loads(load("ticket__new.json"))
    data["event"] = "purge"
    body = json.dumps(data).encode()
    assert connector.parse_webhook(signed(body), body) == []


# ---------------------------------------------------------------------------------------- authentication
def test_valid_signature_passes_with_any_header_case(connector: GLPIConnector) -> None:
    body = load("ticket__new.json")
    headers = {k.lower(): v for k, v in signed(body).items()}
    connector.authenticate(headers, body, {})


def test_forged_signature_is_refused(connector: GLPIConnector) -> None:
    body = load("ticket__new.json")
    with pytest.raises(SignatureInvalid) as err:
        connector.authenticate(signed(body, secret="not-the-secret"), body, {})
    assert err.value.status == 401


def test_tampered_body_is_refused(connector: GLPIConnector) -> None:
    body = load("ticket__new.json")
    headers = signed(body)
    with pytest.raises(SignatureInvalid):
        connector.authenticate(headers, body.replace(b'"id": 78', b'"id": 79'), {})


def test_timestamp_is_part_of_the_signature(connector: GLPIConnector) -> None:
    body = load("ticket__new.json")
    headers = signed(body)
    headers["X-GLPI-timestamp"] = str(int(headers["X-GLPI-timestamp"]) - 1)
    with pytest.raises(SignatureInvalid):
        connector.authenticate(headers, body, {})


@pytest.mark.parametrize("drop", ["X-GLPI-signature", "X-GLPI-timestamp"])
def test_missing_header_is_signature_missing(connector: GLPIConnector, drop: str) -> None:
    body = load("ticket__new.json")
    headers = signed(body)
    del headers[drop]
    with pytest.raises(SignatureMissing) as err:
        connector.authenticate(headers, body, {})
    assert err.value.status == 400


def test_stale_and_future_timestamps_are_refused(connector: GLPIConnector) -> None:
    body = load("ticket__new.json")
    connector.authenticate(signed(body, timestamp=int(time.time()) - 3500), body, {})  # within 3600 s
    with pytest.raises(SignatureInvalid, match="older than 3600 s"):
        connector.authenticate(signed(body, timestamp=int(time.time()) - 3700), body, {})
    with pytest.raises(SignatureInvalid, match="future"):
        connector.authenticate(signed(body, timestamp=int(time.time()) + 3600), body, {})


def test_no_secret_configured_refuses_with_a_clear_message(fake: FakeGLPI) -> None:
    conn = GLPIConnector(fake.url, fake.bot_token, fake.app_token, webhook_secret="")
    body = load("ticket__new.json")
    with pytest.raises(SignatureInvalid, match="no webhook secret is configured"):
        conn.authenticate(signed(body), body, {})
    # Without a secret there is nothing to prove: refused like a wrong token (issue 8 item 1).
    with pytest.raises(ChallengeRefused):
        conn.challenge({"crc_token": "abc"})
    conn.close()


def test_crc_challenge_answer() -> None:
    # GLPI: crc_token = hash_hmac('sha256', 'validate_cra_challenge', secret); expects
    # hash_hmac('sha256', crc_token, secret) - PHP's order is (algo, data, key).
    secret = "s3cr3t"
    crc_token, expected = FakeGLPI.cra_challenge(secret)
    assert crc_token == hmac.new(secret.encode(), b"validate_cra_challenge", hashlib.sha256).hexdigest()
    assert answer_cra_challenge(secret, crc_token) == expected
    assert answer_cra_challenge(secret, crc_token) != hmac.new(crc_token.encode(), secret.encode(),
                                                               hashlib.sha256).hexdigest()


def test_connector_challenge(connector: GLPIConnector) -> None:
    assert connector.challenge({}) is None  # not a challenge: the blueprint says GET is for challenges only
    token, expected = FakeGLPI.cra_challenge(SECRET)
    assert connector.challenge({"crc_token": token}) == expected


@pytest.mark.parametrize("token", ["tok", "", "0" * 64, "validate_cra_challenge", "X" * 5000])
def test_item1_challenge_refuses_any_token_but_glpis(connector: GLPIConnector, token: str) -> None:
    """Issue 8 item 1: answering HMAC(secret, X) for any X signed deliveries for anyone."""
    with pytest.raises(ChallengeRefused) as err:
        connector.challenge({"crc_token": token})
    assert err.value.status == 403 and str(err.value) == "challenge refused"


def test_item1_a_delivery_signature_is_never_a_challenge_answer(connector: GLPIConnector) -> None:
    """What the attack needed: a caller-chosen body + timestamp signed through the challenge."""
    body = load("ticket__new.json")
    ts = str(int(time.time()))
    with pytest.raises(ChallengeRefused):
        connector.challenge({"crc_token": (body + ts.encode()).decode()})
    # The one answer ever given covers 64 hex digits, never a JSON body + a Unix time.
    _, answer = FakeGLPI.cra_challenge(SECRET)
    with pytest.raises(SignatureInvalid):
        connector.authenticate({"X-GLPI-signature": answer, "X-GLPI-timestamp": ts}, body, {})


# ---------------------------------------------------------------------------------------- malformed, keys
@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"event": "new"}', b'{"item": {}, "no": "event"}',
                                  b'{"event": "new", "item": "text"}', b"\xff\xfe"])
def test_malformed_payloads(connector: GLPIConnector, body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        connector.parse_webhook(signed(body), body)


def test_ticket_item_without_id_is_malformed(connector: GLPIConnector) -> None:
    data = json.loads(load("ticket__new.json"))
    del data["item"]["id"]
    body = json.dumps(data).encode()
    with pytest.raises(MalformedPayload):
        connector.parse_webhook(signed(body), body)


def test_delivery_key_is_stable_across_retries_and_differs_between_deliveries(connector: GLPIConnector) -> None:
    body = load("ticket__update.json")
    headers = signed(body, timestamp=1_750_000_000)
    [first] = connector.parse_webhook(headers, body)
    [retry] = connector.parse_webhook(dict(headers), body)
    [other] = connector.parse_webhook(signed(body, timestamp=1_750_000_060), body)
    assert first.delivery_key == retry.delivery_key
    assert first.delivery_key != other.delivery_key
    assert first.delivery_key == "glpi:" + hashlib.sha256(body + b"1750000000").hexdigest()


# ---------------------------------------------------------------------------------------- the fake's deliveries
@pytest.mark.parametrize(("itemtype", "event", "kind"), [
    ("Ticket", "new", "created"), ("Ticket", "update", "updated"), ("Ticket", "delete", "deleted"),
    ("ITILFollowup", "new", "comment"), ("ITILSolution", "new", "solution")])
def test_fake_deliveries_round_trip(fake: FakeGLPI, connector: GLPIConnector, itemtype: str, event: str,
                                    kind: str) -> None:
    tid = fake.create_ticket(status=2)
    fake.add_followup(tid, fake.requester_id, "<p>more info</p>")
    fake.add_solution(tid, fake.bot_id)
    headers, body = fake.webhook_delivery(event, itemtype, tid, SECRET)
    assert "Content-Type" not in headers
    assert b"\\/" in body and body.startswith(b'{\n    "item": {')  # PHP json_encode(JSON_PRETTY_PRINT)
    connector.authenticate(headers, body, {})
    [e] = connector.parse_webhook(headers, body)
    assert (e.ticket_id, e.kind) == (str(tid), kind)
