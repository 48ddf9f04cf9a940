"""Inbound webhooks: one Flask blueprint, ``/webhooks/<source>``.

The blueprint knows nothing of GLPI or Redmine: each source is a
:class:`connectors.base.WebhookSource` that authenticates a delivery on its raw bytes and parses it
into normalized events. Verified events are handed to ``accept`` (the composition root persists
them durably); only then is the delivery answered 2xx. It never imports ``plugin``.

Order of checks (after Sentry's GitHub webhook): known source (404) -> body size (413) ->
authentication on the raw bytes (400 missing / 401 forged) -> parse (400 malformed) -> persist
(503 when the store is unavailable, so the helpdesk retries) -> 202. A known event we do not act
on is answered 200 and changes nothing.

``GET /webhooks/<source>`` answers the helpdesk's challenge (GLPI's ``crc_token``) and nothing else: a
source answers only the challenge its helpdesk really sends, and any other is a 403 with a fixed text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from connectors.base import TicketEvent, WebhookError, WebhookSource
from helpdesk_errors import HelpdeskError

log = logging.getLogger(__name__)
#: Deliveries we authenticate but do not act on get their own logger (Zulip's pattern), so that an
#: admin can see what the helpdesk sends without it drowning the service log.
unsupported_log = logging.getLogger(__name__ + ".unsupported")


@dataclass(frozen=True)
class Accepted:
    """What ``accept`` did with a delivery's events."""

    new: int
    duplicates: int


class IntakeUnavailable(HelpdeskError):
    """The durable inbox could not store the events: the helpdesk must retry later (503)."""


AcceptEvents = Callable[[str, list[TicketEvent]], Accepted]

_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}


def create_blueprint(
    sources: Callable[[], Mapping[str, WebhookSource]],
    accept: Callable[[], AcceptEvents],
    *,
    max_body_bytes: int,
) -> Blueprint:
    """The webhooks blueprint. ``sources`` and ``accept`` are looked up per request (the app's
    services may be rebuilt in tests); ``max_body_bytes`` bounds every delivery."""
    bp = Blueprint("webhooks", __name__)

    def _error(status: int, error: str, detail: str) -> tuple[Response, int]:
        return jsonify(error=error, detail=detail), status

    @bp.get("/webhooks/<source>")
    def challenge(source: str) -> Any:
        hook = sources().get(source)
        if hook is None:
            return _error(404, "Not Found", f"no webhook source {source!r} is enabled")
        try:
            answer = hook.challenge(request.args)
        except WebhookError as e:
            # A fixed answer: which check failed (no secret, wrong token) helps only a prober.
            log.warning("webhook_challenge_refused: source=%s reason=%s", source, type(e).__name__)
            return _error(e.status, _REASONS.get(e.status, "Bad Request"), "challenge refused")
        if answer is None:
            return _error(405, "Method Not Allowed", "deliveries are POSTed; GET answers challenges only")
        return Response(answer, status=200, mimetype="text/plain")

    @bp.post("/webhooks/<source>")
    def deliver(source: str) -> Any:
        hook = sources().get(source)
        if hook is None:
            return _error(404, "Not Found", f"no webhook source {source!r} is enabled")
        if request.content_length is not None and request.content_length > max_body_bytes:
            log.warning("webhook_refused: source=%s reason=too_large bytes=%s", source, request.content_length)
            return _error(413, "Payload Too Large", f"bodies are limited to {max_body_bytes} bytes")
        try:
            # Raw bytes, whatever the Content-Type (GLPI sends none): the signature covers them.
            body = request.get_data(cache=True, as_text=False, parse_form_data=False)
        except RequestEntityTooLarge:
            log.warning("webhook_refused: source=%s reason=too_large", source)
            return _error(413, "Payload Too Large", f"bodies are limited to {max_body_bytes} bytes")
        if len(body) > max_body_bytes:
            log.warning("webhook_refused: source=%s reason=too_large bytes=%d", source, len(body))
            return _error(413, "Payload Too Large", f"bodies are limited to {max_body_bytes} bytes")
        headers = {k: v for k, v in request.headers.items()}
        try:
            hook.authenticate(headers, body, request.args)
            events = hook.parse_webhook(headers, body)
        except WebhookError as e:
            log.warning("webhook_refused: source=%s reason=%s: %s", source, type(e).__name__, e)
            return _error(e.status, type(e).__name__, str(e))
        if not events:
            unsupported_log.info("webhook_ignored: source=%s bytes=%d", source, len(body))
            return jsonify(status="ignored", accepted=0), 200
        try:
            result = accept()(source, events)
        except IntakeUnavailable as e:
            log.error("webhook_not_stored: source=%s: %s", source, e)
            return _error(503, "Service Unavailable", "the event could not be stored; retry later")
        log.info("webhook_accepted: source=%s new=%d duplicates=%d", source, result.new, result.duplicates)
        return jsonify(status="accepted", accepted=result.new, duplicates=result.duplicates), 202

    return bp
