"""The generic webhooks blueprint: order of checks, status codes, nothing stored on refusal."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping

import pytest
from flask import Flask

from connectors.base import (
    ChallengeRefused,
    MalformedPayload,
    SignatureInvalid,
    SignatureMissing,
    TicketEvent,
    WebhookSource,
)
from webhooks import Accepted, IntakeUnavailable, create_blueprint

SECRET = b"s3cret"


class HmacSource(WebhookSource):
    """A minimal source: HMAC-SHA256 of the raw body in X-Sig; {"ticket": N, "kind": ...} bodies."""

    def authenticate(self, headers: Mapping[str, str], body: bytes, args: Mapping[str, str]) -> None:
        sig = {k.lower(): v for k, v in headers.items()}.get("x-sig")
        if sig is None:
            raise SignatureMissing("X-Sig header missing")
        if not hmac.compare_digest(sig, hmac.new(SECRET, body, hashlib.sha256).hexdigest()):
            raise SignatureInvalid("X-Sig does not match the body")

    def challenge(self, args: Mapping[str, str]) -> str | None:
        if args.get("ping") == "wrong":
            raise ChallengeRefused("the token is not the one the helpdesk sends")
        return f"pong:{args['ping']}" if "ping" in args else None

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[TicketEvent]:
        try:
            data = json.loads(body)
            kind = data["kind"]
            ticket = str(data["ticket"])
        except (ValueError, KeyError, TypeError) as e:
            raise MalformedPayload(f"not a delivery: {e}") from e
        if kind == "ignored":
            return []
        return [TicketEvent(source="t", ticket_id=ticket, kind=kind,
                            delivery_key="t:" + hashlib.sha256(body).hexdigest())]


class Inbox:
    def __init__(self):
        self.keys: list[str] = []
        self.down = False

    def accept(self, source: str, events: list[TicketEvent]) -> Accepted:
        if self.down:
            raise IntakeUnavailable("disk full")
        new = [e for e in events if e.delivery_key not in self.keys]
        self.keys += [e.delivery_key for e in new]
        return Accepted(new=len(new), duplicates=len(events) - len(new))


@pytest.fixture
def inbox():
    return Inbox()


@pytest.fixture
def client(inbox):
    app = Flask(__name__)
    app.register_blueprint(create_blueprint(lambda: {"t": HmacSource()}, lambda: inbox.accept, max_body_bytes=2048))
    return app.test_client()


def _post(client, body: bytes, sig: str | None = "auto", path="/webhooks/t", **kw):
    headers = {}
    if sig == "auto":
        sig = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    if sig is not None:
        headers["X-Sig"] = sig
    return client.post(path, data=body, headers=headers, **kw)


BODY = json.dumps({"ticket": 5, "kind": "created"}).encode()


def test_valid_delivery_is_accepted_once(client, inbox):
    r = _post(client, BODY)
    assert r.status_code == 202 and r.json["accepted"] == 1
    r = _post(client, BODY)  # a replay: acknowledged, no second event
    assert r.status_code == 202 and r.json == {"status": "accepted", "accepted": 0, "duplicates": 1}
    assert len(inbox.keys) == 1


def test_no_content_type_is_fine(client, inbox):
    r = _post(client, BODY, content_type=None)
    assert r.status_code == 202


@pytest.mark.parametrize(("sig", "status"), [(None, 400), ("0" * 64, 401), ("", 401)])
def test_missing_or_forged_signature_is_refused_and_nothing_stored(client, inbox, sig, status):
    r = _post(client, BODY, sig=sig)
    assert r.status_code == status
    assert inbox.keys == []


def test_signature_covers_the_raw_bytes(client, inbox):
    sig = hmac.new(SECRET, BODY, hashlib.sha256).hexdigest()
    reformatted = json.dumps(json.loads(BODY), indent=2).encode()  # same JSON, other bytes
    assert _post(client, reformatted, sig=sig).status_code == 401


def test_malformed_body_is_400(client, inbox):
    assert _post(client, b"{not json").status_code == 400
    assert _post(client, b'{"ticket": 1}').status_code == 400
    assert inbox.keys == []


def test_oversized_body_is_413_before_authentication(client, inbox):
    big = json.dumps({"ticket": 1, "kind": "created", "pad": "x" * 4000}).encode()
    r = _post(client, big)
    assert r.status_code == 413
    assert inbox.keys == []


def test_known_but_ignored_event_is_2xx_and_changes_nothing(client, inbox, caplog):
    caplog.set_level(logging.INFO, logger="webhooks.unsupported")
    r = _post(client, json.dumps({"ticket": 1, "kind": "ignored"}).encode())
    assert r.status_code == 200 and r.json["status"] == "ignored"
    assert inbox.keys == []
    assert any(rec.name == "webhooks.unsupported" for rec in caplog.records)


def test_unknown_source_is_404(client):
    assert _post(client, BODY, path="/webhooks/nope").status_code == 404


def test_store_down_is_503_so_the_helpdesk_retries(client, inbox):
    inbox.down = True
    assert _post(client, BODY).status_code == 503


def test_get_answers_challenges_only(client):
    assert client.get("/webhooks/t?ping=abc").get_data(as_text=True) == "pong:abc"
    assert client.get("/webhooks/t").status_code == 405


def test_refused_challenge_is_403_and_says_nothing_more(client):
    r = client.get("/webhooks/t?ping=wrong")
    assert r.status_code == 403
    assert r.get_json() == {"error": "Forbidden", "detail": "challenge refused"}
