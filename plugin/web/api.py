"""The JSON API: ``GET /healthz`` and ``POST /api/ask``.

``/api/*`` needs an API key (:mod:`plugin.service.apikeys`); ``/healthz`` says only ok/degraded without
one. The engine work one /api/ask request may cause is bounded: retrieval reads the first
``api.max_query_chars`` characters, and at most ``api.max_concurrent_asks`` asks run at once (one more
is a 503 with Retry-After), so that webhook intake in the same process stays fast.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, cast

from flask import Blueprint, current_app, jsonify, request

from connectors import safejson
from plugin.service.apikeys import KeyChecker, presented_key
from plugin.web.context import current_services
from plugin.wiring import Services

log = logging.getLogger(__name__)

#: The API key checker and the /api/ask slots of one app.
API_EXTENSION = "helpdesk_assist.api"
MAX_TEXT_CHARS = 20_000
#: Seconds a client should wait after a 503 "busy" before asking again.
RETRY_AFTER_S = 1

api = Blueprint("api", __name__)


@dataclass(frozen=True)
class ApiState:
    keys: KeyChecker
    slots: threading.BoundedSemaphore


def _state() -> ApiState:
    return cast(ApiState, current_app.extensions[API_EXTENSION])


def _key_status() -> bool | None:
    """True: a valid key was sent; False: a wrong one; None: none at all."""
    key = presented_key(request.headers)
    if key is None:
        return None
    return _state().keys.matches(key)


def _unauthorized() -> Any:
    response = jsonify(error="Unauthorized", detail="an API key is required: send 'Authorization: Bearer <key>' "
                       "or 'X-API-Key: <key>' (api.keys, or the key in <data_dir>/api_key)")
    response.headers["WWW-Authenticate"] = 'Bearer realm="helpdesk-assist"'
    return response, 401


@api.before_request
def _require_key() -> Any:
    # Every /api/* route, present and future, before its body is read.
    if request.path.startswith("/api/") and _key_status() is not True:
        return _unauthorized()
    return None


@api.get("/healthz")
def healthz() -> Any:
    """Without a key only ok/degraded (for load balancers); with one, models, index, queue and connectors."""
    status = _key_status()
    if status is False:
        return _unauthorized()
    health = current_services().health()
    return jsonify(health if status else {"status": health["status"]})


@api.post("/api/ask")
def ask() -> Any:
    services = current_services()
    slots = _state().slots
    # The slot first, before the body is parsed: while the engine is busy, a flood of asks costs one
    # cheap 503 each, not a JSON parse and validation of 20,000 characters each.
    if not slots.acquire(blocking=False):
        # DEBUG, not INFO: a flood of busy answers must not become a flood of log lines too.
        log.debug("api_ask_busy: max_concurrent_asks=%d", services.settings.api.max_concurrent_asks)
        request.get_data(cache=False)  # read (and drop) the body: an unread one resets the client's connection
        response = jsonify(error="Service Unavailable", detail="the assistant is busy with other requests; retry "
                           "in a moment")
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response, 503
    try:
        return _ask(services)
    finally:
        slots.release()


def _ask(services: Services) -> Any:
    if not request.is_json:
        return jsonify(error="Bad Request", detail='expected a JSON object like {"text": "..."}'), 400
    try:
        data = safejson.loads(request.get_data(cache=False))
    except safejson.JSONTooDeep as e:
        return jsonify(error="Bad Request", detail=f"{e}; expected a JSON object like {{\"text\": \"...\"}}"), 400
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        return jsonify(error="Bad Request", detail='expected a JSON object like {"text": "..."}'), 400
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        return jsonify(error="Bad Request", detail="'text' must be a non-empty string"), 400
    if len(text) > MAX_TEXT_CHARS:
        return jsonify(error="Bad Request", detail=f"'text' is longer than {MAX_TEXT_CHARS} characters"), 400
    category = data.get("category")
    if category is not None and not isinstance(category, str):
        return jsonify(error="Bad Request", detail="'category' must be a string"), 400
    compose = data.get("compose", True)
    if not isinstance(compose, bool):
        return jsonify(error="Bad Request", detail="'compose' must be true or false"), 400
    limit = services.settings.api.max_query_chars
    result = services.engine.ask(text[:limit], category=category or None, compose=compose)
    # Never the entries' source text: for a knowledge base built from tickets, ``question`` is what an
    # employee wrote (names, logins). Titles and answers are what the public suggestions show too.
    body = result.model_dump(exclude={"hits": {"__all__": {"question"}}})
    body["truncated"] = len(text) > limit
    return jsonify(body)
