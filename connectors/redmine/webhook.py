"""Inbound Redmine webhooks: Redmine 7.0's native (signed) ones and the suer/redmine_webhook plugin's.

Which sender a delivery comes from is decided by its credentials: ``X-Redmine-Signature-256``
(HMAC-SHA256 of the raw body, GitHub style) for Redmine 7, or the shared ``plugin_token`` (URL
``?token=`` or ``X-Helpdesk-Assist-Token``) for the unsigned plugin. Bodies are told apart by shape:
``{"type", "data"}`` (native) versus ``{"payload": {"action", ...}}`` (plugin).

A webhook is only a notification: the pipeline re-fetches the issue through the API (the native
journal carries no ``private_notes`` flag).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping
from datetime import datetime

from pydantic import ValidationError

from connectors import safejson
from connectors.base import EventKind, MalformedPayload, SignatureInvalid, SignatureMissing, TicketEvent

from .payloads import NativeEnvelope, PluginEnvelope

log = logging.getLogger(__name__)
#: Known events we deliberately ignore are logged here, apart from the rest.
ignored_log = logging.getLogger(__name__ + ".ignored")

SIGNATURE_HEADER = "X-Redmine-Signature-256"
TOKEN_HEADER = "X-Helpdesk-Assist-Token"  # noqa: S105 - a header name
TOKEN_ARG = "token"  # noqa: S105 - a query argument name
SOURCE = "redmine"

#: Every event this module turns into ticket events; tests require a fixture for each
#: (``tests/fixtures/redmine/<event with . replaced by __>.json``). The plugin's actions are
#: named ``plugin.<action>``.
SUPPORTED_EVENTS: tuple[str, ...] = (
    "issue.created",
    "issue.updated",
    "issue.deleted",
    "plugin.opened",
    "plugin.updated",
)
#: Redmine 7 event families that are answered 2xx and produce no event.
IGNORED_EVENT_PREFIXES: tuple[str, ...] = ("news.", "time_entry.", "wiki_page.", "version.")


def _header(headers: Mapping[str, str], name: str) -> str:
    """Case-insensitive header lookup that works for plain dicts and Werkzeug headers alike."""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        for k, v in headers.items():
            if k.lower() == lowered:
                return v.strip()
        return ""
    return value.strip()


def signature(secret: str, body: bytes) -> str:
    """The header value Redmine 7 sends: ``sha256=<hex HMAC-SHA256(secret, body)>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def authenticate(
    headers: Mapping[str, str], body: bytes, args: Mapping[str, str], *, webhook_secret: str, plugin_token: str
) -> None:
    """Raise SignatureMissing (400) / SignatureInvalid (401) unless the delivery is authentic."""
    if not webhook_secret and not plugin_token:
        raise SignatureInvalid(
            "Redmine webhooks are not configured: set redmine.webhook_secret (Redmine 7 native webhooks) "
            "or redmine.plugin_token (redmine_webhook plugin), or use polling"
        )
    sent_signature = _header(headers, SIGNATURE_HEADER)
    if sent_signature:
        if not webhook_secret:
            raise SignatureInvalid(
                f"a signed Redmine 7 webhook ({SIGNATURE_HEADER}) arrived but redmine.webhook_secret is not set"
            )
        expected = signature(webhook_secret, body)
        if not hmac.compare_digest(sent_signature.lower().encode(), expected.encode()):
            raise SignatureInvalid(f"{SIGNATURE_HEADER} does not match the body and redmine.webhook_secret")
        return
    sent_token = _header(headers, TOKEN_HEADER) or (args.get(TOKEN_ARG) or "").strip()
    if sent_token:
        if not plugin_token:
            raise SignatureInvalid("a webhook token arrived but redmine.plugin_token is not set")
        if not hmac.compare_digest(sent_token.encode(), plugin_token.encode()):
            raise SignatureInvalid("the webhook token does not match redmine.plugin_token")
        return
    expected_how = []
    if webhook_secret:
        expected_how.append(f"a {SIGNATURE_HEADER} header")
    if plugin_token:
        expected_how.append(f"a ?{TOKEN_ARG}= argument or {TOKEN_HEADER} header")
    raise SignatureMissing("Redmine webhook without credentials: expected " + " or ".join(expected_how))


def delivery_key(body: bytes) -> str:
    return f"{SOURCE}:" + hashlib.sha256(body).hexdigest()


def parse(body: bytes) -> list[TicketEvent]:
    """The ticket events in an authenticated delivery ([] for known events we ignore)."""
    try:
        data = safejson.loads(body)
    except safejson.JSONTooDeep as e:
        raise MalformedPayload(f"Redmine webhook body: {e}") from e
    except (ValueError, UnicodeDecodeError) as e:
        raise MalformedPayload("Redmine webhook body is not JSON") from e
    if not isinstance(data, dict):
        raise MalformedPayload("Redmine webhook body is not a JSON object")
    if "payload" in data:
        return _parse_plugin(data, body)
    if "type" in data:
        return _parse_native(data, body)
    raise MalformedPayload("not a Redmine webhook: neither a 'type' (Redmine 7) nor a 'payload' (plugin) key")


def _event(
    ticket_id: int, kind: EventKind, body: bytes, actor: int | None, at: datetime | None, name: str
) -> TicketEvent:
    return TicketEvent(
        source=SOURCE,
        ticket_id=str(ticket_id),
        kind=kind,
        delivery_key=delivery_key(body),
        actor_id=str(actor) if actor is not None else None,
        occurred_at=at,
        vendor_event=name,
    )


def _parse_native(data: dict[str, object], body: bytes) -> list[TicketEvent]:
    try:
        env = NativeEnvelope.model_validate(data)
    except ValidationError as e:
        raise MalformedPayload(f"Redmine 7 webhook with an unexpected shape ({e.error_count()} errors)") from e
    if env.type.startswith(IGNORED_EVENT_PREFIXES) or env.type not in SUPPORTED_EVENTS:
        ignored_log.info("redmine.webhook_ignored event=%s", env.type)
        return []
    issue = env.data.issue
    if issue is None:
        raise MalformedPayload(f"Redmine 7 webhook {env.type} without data.issue")
    journal = env.data.journal
    if env.type == "issue.created":
        actor = issue.author.id if issue.author else None
        return [_event(issue.id, "created", body, actor, env.timestamp or issue.created_on, env.type)]
    if env.type == "issue.deleted":
        return [_event(issue.id, "deleted", body, None, env.timestamp, env.type)]
    kind: EventKind = "comment" if journal is not None and (journal.notes or "").strip() else "updated"
    actor = journal.user.id if journal is not None and journal.user else None
    at = env.timestamp or (journal.created_on if journal else None) or issue.updated_on
    return [_event(issue.id, kind, body, actor, at, env.type)]


def _parse_plugin(data: dict[str, object], body: bytes) -> list[TicketEvent]:
    try:
        env = PluginEnvelope.model_validate(data)
    except ValidationError as e:
        raise MalformedPayload(
            f"redmine_webhook plugin payload with an unexpected shape ({e.error_count()} errors)"
        ) from e
    p = env.payload
    name = f"plugin.{p.action}"
    if name not in SUPPORTED_EVENTS:
        ignored_log.info("redmine.webhook_ignored event=%s", name)
        return []
    if p.action == "opened":
        actor = p.issue.author.id if p.issue.author else None
        return [_event(p.issue.id, "created", body, actor, p.issue.created_on, name)]
    journal = p.journal
    kind: EventKind = "comment" if journal is not None and (journal.notes or "").strip() else "updated"
    actor = journal.author.id if journal is not None and journal.author else None
    at = (journal.created_on if journal else None) or p.issue.updated_on
    return [_event(p.issue.id, kind, body, actor, at, name)]
