"""GLPI 11 native webhooks (GLPI ``src/Webhook.php``, ``src/QueuedWebhook.php``): authentication on the raw
bytes, then parsing.

GLPI signs ``X-GLPI-signature = hash_hmac('sha256', $body . $timestamp, $secret)`` (hex) and sends
``X-GLPI-timestamp`` (Unix seconds at *enqueue* time, reused on retries) and no Content-Type.

The default payload is ``{"item": {...}, "event": "new|update|delete", "parent_item": {...}}`` where
``item`` is the HL API representation of the item and ``parent_item`` (child items only) the HL
representation of its ITIL parent. It carries **no itemtype**: one webhook is configured per
itemtype in GLPI, and we share one URL, so the itemtype is inferred (:func:`infer_itemtype`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Mapping
from datetime import datetime

from pydantic import ValidationError

from connectors import safejson
from connectors.base import ChallengeRefused, MalformedPayload, SignatureInvalid, SignatureMissing, TicketEvent
from connectors.glpi.payloads import HLFollowup, HLSolution, HLTicket, WebhookEnvelope

log = logging.getLogger(__name__)
#: Deliveries we understand but do not act on get their own logger (answered 2xx, no side effect).
unsupported_log = logging.getLogger(__name__ + ".unsupported")

SIGNATURE_HEADER = "X-GLPI-signature"
TIMESTAMP_HEADER = "X-GLPI-timestamp"
#: A timestamp this far ahead of our clock is refused (clock skew allowance).
MAX_FUTURE_S = 300

#: ``"<itemtype>/<event>"`` pairs we turn into events. Each has a captured-shape fixture in
#: ``tests/fixtures/glpi/<itemtype lowercased>__<event>.json`` (enforced by a test).
SUPPORTED_EVENTS: tuple[str, ...] = (
    "Ticket/new",
    "Ticket/update",
    "Ticket/delete",
    "ITILFollowup/new",
    "ITILSolution/new",
    "ITILSolution/update",
)
_KINDS = {
    "Ticket/new": "created",
    "Ticket/update": "updated",
    "Ticket/delete": "deleted",
    "ITILFollowup/new": "comment",
    "ITILSolution/new": "solution",
    "ITILSolution/update": "solution",
}

#: Every property of the HL ``Solution`` schema (GLPI 11 ITILController), plus ones a later version
#: may add. A child item whose keys all lie in this set is a solution.
_SOLUTION_KEYS = frozenset({"id", "itemtype", "items_id", "content", "user", "user_editor", "status", "type",
                            "date_creation", "date_mod", "date_approval", "approver", "user_approval", "links"})
#: HL ``Followup`` properties that a ``Solution`` does not have.
_FOLLOWUP_ONLY_KEYS = frozenset({"is_private", "request_type"})
#: HL ``Ticket`` properties that no other ITIL object (Change, Problem) has (GLPI 11 ``ITILController`` schemas).
_TICKET_ONLY_KEYS = frozenset({"request_type", "external_id"})


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup (WSGI, werkzeug and plain dicts alike)."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def sign(secret: str, body: bytes, timestamp: str) -> str:
    """A delivery's signature: hex HMAC-SHA256 with key ``secret`` over ``body + timestamp``.

    Deliveries only. The challenge below uses the same key, so it never signs what a caller sends:
    an HMAC over caller-chosen bytes would be a valid signature of a forged delivery."""
    return hmac.new(secret.encode(), body + timestamp.encode(), hashlib.sha256).hexdigest()


def authenticate(headers: Mapping[str, str], body: bytes, *, secret: str, max_age_s: int,
                 now: float | None = None) -> None:
    """Accept the delivery or raise SignatureMissing (400) / SignatureInvalid (401)."""
    if not secret:
        raise SignatureInvalid("GLPI webhook refused: no webhook secret is configured (set glpi.webhook_secret "
                               "to the secret shown in GLPI under Setup > Webhooks > your webhook > Security)")
    signature = header(headers, SIGNATURE_HEADER)
    timestamp = header(headers, TIMESTAMP_HEADER)
    if not signature:
        raise SignatureMissing(f"GLPI webhook refused: no {SIGNATURE_HEADER} header")
    if not timestamp:
        raise SignatureMissing(f"GLPI webhook refused: no {TIMESTAMP_HEADER} header")
    expected = sign(secret, body, timestamp)
    if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode("utf-8", "replace")):
        raise SignatureInvalid("GLPI webhook refused: the signature does not match (check the webhook secret)")
    try:
        sent = int(timestamp.strip())
    except ValueError as e:
        raise SignatureInvalid(f"GLPI webhook refused: {TIMESTAMP_HEADER} is not a Unix time") from e
    age = (time.time() if now is None else now) - sent
    if age > max_age_s:
        raise SignatureInvalid(f"GLPI webhook refused: signed {int(age)} s ago, older than {max_age_s} s")
    if age < -MAX_FUTURE_S:
        raise SignatureInvalid("GLPI webhook refused: the timestamp is in the future (check the clocks)")


#: The only message GLPI ever puts in a challenge: ``Webhook::validateCRAChallenge($url, $body, $secret)``
#: is called with ``$body = 'validate_cra_challenge'`` by QueuedWebhook::sendById, Webhook::showForm
#: and ajax/webhook.php (glpi-project/glpi, src/Webhook.php, 10.0 and 11.0).
CRA_CHALLENGE_BODY = b"validate_cra_challenge"


def answer_cra_challenge(secret: str, crc_token: str) -> str:
    """The body GLPI expects for ``GET <url>?crc_token=...`` (GLPI's challenge-response).

    GLPI's ``Webhook::validateCRAChallenge`` (glpi-project/glpi src/Webhook.php; 11.0)::

        $secret_signature = self::getSignature($body, $decrypted_secret);   // hash_hmac('sha256', $body, $secret)
        $response = $httpClient->request('GET', '', ['query' => ['crc_token' => $secret_signature]]);
        ... hash_equals(hash_hmac('sha256', $secret_signature, $decrypted_secret), $response_challenge)

    with ``$body = 'validate_cra_challenge'`` always. PHP's ``hash_hmac`` takes (algo, *data*, *key*),
    so GLPI sends ``crc_token = HMAC(key=secret, 'validate_cra_challenge')`` and wants
    ``HMAC(key=secret, crc_token)`` back. We therefore answer that one token only (compared in constant
    time) and raise :class:`ChallengeRefused` for anything else: answering HMAC(secret, X) for any X
    handed anyone a delivery signature (X = body + timestamp; issue 8 item 1). The single answer we
    give covers 64 hex digits, which is never a JSON body followed by a Unix time.
    """
    if not secret:
        raise ChallengeRefused("challenge refused")
    expected = hmac.new(secret.encode(), CRA_CHALLENGE_BODY, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), crc_token.strip().lower().encode("utf-8", "replace")):
        raise ChallengeRefused("challenge refused")
    return hmac.new(secret.encode(), expected.encode(), hashlib.sha256).hexdigest()


def infer_itemtype(envelope: WebhookEnvelope) -> str | None:
    """Which GLPI itemtype a delivery is about; None when it is not one we know.

    Rule (the default payload has no itemtype field; GLPI 11's HL API schemas, ``ITILController``, decide):
    1. a top-level ``"itemtype"`` (a custom payload template that adds it) wins;
    2. an item with ``itemtype`` + ``items_id`` is a *child* of an ITIL object (``parent_item`` is
       present too): with ``is_private`` or ``request_type`` it is an ``ITILFollowup`` (the Followup
       schema has them, the Solution schema has neither); with only Solution-schema keys it is an
       ``ITILSolution``; anything else (documents, validations) is unknown;
    3. an item without ``items_id`` and without ``parent_item`` is a main item: with ``request_type``
       or ``external_id`` (Ticket-only properties) and a ``status`` it is a ``Ticket``; otherwise an
       asset, a Change, a Problem... (unknown).
    """
    if envelope.itemtype:
        return envelope.itemtype
    item = envelope.item
    keys = set(item)
    if "items_id" in keys and "itemtype" in keys:
        if keys & _FOLLOWUP_ONLY_KEYS:
            return "ITILFollowup"
        if keys <= _SOLUTION_KEYS and "content" in keys:
            return "ITILSolution"
        return None
    if envelope.parent_item is None and keys & _TICKET_ONLY_KEYS and "status" in keys:
        return "Ticket"
    return None


def delivery_key(body: bytes, timestamp: str) -> str:
    """Same delivery (a retry reuses the body and the enqueue timestamp) -> same key."""
    return "glpi:" + hashlib.sha256(body + timestamp.encode()).hexdigest()


def parse(headers: Mapping[str, str], body: bytes, *, source: str = "glpi") -> list[TicketEvent]:
    """The events of an authenticated delivery; [] for deliveries we ignore."""
    try:
        raw = safejson.loads(body)
    except safejson.JSONTooDeep as e:
        raise MalformedPayload(f"GLPI webhook body: {e}") from e
    except (ValueError, UnicodeDecodeError) as e:
        raise MalformedPayload("GLPI webhook body is not JSON") from e
    try:
        envelope = WebhookEnvelope.model_validate(raw)
    except ValidationError as e:
        raise MalformedPayload("GLPI webhook body is not {item, event, parent_item}: " + _fields(e)) from e
    itemtype = infer_itemtype(envelope)
    vendor_event = f"{itemtype or '?'}/{envelope.event}"
    kind = _KINDS.get(vendor_event)
    if kind is None:
        unsupported_log.info("glpi_webhook_ignored vendor_event=%s", vendor_event,
                             extra={"event": "glpi_webhook_ignored"})
        return []
    key = delivery_key(body, header(headers, TIMESTAMP_HEADER) or "")
    try:
        if itemtype == "Ticket":
            ticket = HLTicket.model_validate(envelope.item)
            ticket_id, actor, when = ticket.id, None, ticket.date_mod or ticket.date_creation
        else:
            child: HLFollowup | HLSolution = (HLFollowup if itemtype == "ITILFollowup" else HLSolution).model_validate(
                envelope.item)
            parent_id = (envelope.parent_item or {}).get("id")
            if child.itemtype != "Ticket":
                unsupported_log.info("glpi_webhook_ignored vendor_event=%s parent=%s", vendor_event, child.itemtype,
                                     extra={"event": "glpi_webhook_ignored"})
                return []
            ticket_id = int(parent_id) if parent_id is not None else child.items_id
            actor = str(child.user.id) if child.user and child.user.id else None
            when = child.date_mod or child.date_creation
    except (ValidationError, TypeError, ValueError) as e:
        raise MalformedPayload(f"GLPI webhook {vendor_event} item is not what GLPI sends: {e}") from e
    event = TicketEvent(source=source, ticket_id=str(ticket_id), kind=kind,  # type: ignore[arg-type]
                        delivery_key=key, actor_id=actor, occurred_at=_iso(when), vendor_event=vendor_event)
    log.info("glpi_webhook_event vendor_event=%s ticket=%s kind=%s", vendor_event, ticket_id, kind,
             extra={"event": "glpi_webhook_event"})
    return [event]


def _iso(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _fields(e: ValidationError) -> str:
    return ", ".join(".".join(str(p) for p in err["loc"]) + " " + err["msg"] for err in e.errors())

