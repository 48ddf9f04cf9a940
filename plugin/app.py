"""The Flask application factory: ``create_app(settings=None)``; gunicorn: ``plugin:create_app()``.

``/api/*`` needs an API key (plugin.apikeys); ``/healthz`` says only ok/degraded without one. The
engine work one /api/ask request may cause is bounded: retrieval reads the first
``api.max_query_chars`` characters, and at most ``api.max_concurrent_asks`` asks run at once (one more
is a 503 with Retry-After), so that webhook intake in the same process stays fast (issue 8 item 9).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from connectors import safejson
from helpdesk_errors import HelpdeskError
from plugin import logredact
from plugin.apikeys import KeyChecker, accepted_keys, presented_key
from plugin.confirm import confirm_bp
from plugin.registry import webhook_sources
from plugin.settings import Settings, load_settings
from rag.errors import EmptyIndexError
from webhooks import create_blueprint

log = logging.getLogger(__name__)

EXTENSION = "helpdesk_assist"
#: The API key checker and the /api/ask slots live beside the services (app.extensions).
KEYS_EXTENSION = "helpdesk_assist.api_keys"
SLOTS_EXTENSION = "helpdesk_assist.ask_slots"
MAX_TEXT_CHARS = 20_000
#: Seconds a client should wait after a 503 "busy" before asking again.
RETRY_AFTER_S = 1

api = Blueprint("api", __name__)


def create_app(settings: Settings | None = None, *, services: Any = None) -> Flask:
    """Build the app. Without ``services`` the engine is built from the settings and the knowledge
    base is imported (the bundled sample when nothing is configured) if it is empty."""
    settings = settings or load_settings()
    if services is None:
        from plugin.services import build_services, ensure_knowledge_base

        services = build_services(settings)
        ensure_knowledge_base(services)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.server.max_body_bytes
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    # Under a gunicorn started by hand (not `serve`), its handlers exist by now: filter them too.
    logredact.install()
    app.extensions[EXTENSION] = services
    app.extensions[KEYS_EXTENSION] = KeyChecker(accepted_keys(settings))
    app.extensions[SLOTS_EXTENSION] = threading.BoundedSemaphore(settings.api.max_concurrent_asks)
    app.register_blueprint(api)
    app.register_blueprint(confirm_bp)
    app.register_blueprint(
        create_blueprint(
            lambda: webhook_sources(_services().connectors),
            lambda: _services().pipeline.accept_events,
            max_body_bytes=settings.server.max_webhook_bytes,
        )
    )

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException) -> Any:
        return jsonify(error=e.name, detail=e.description), e.code or 500

    @app.errorhandler(HelpdeskError)
    def _known_error(e: HelpdeskError) -> Any:
        code = 503 if isinstance(e, EmptyIndexError) else 500
        log.warning("request_failed: %s: %s", type(e).__name__, e)
        return jsonify(error=type(e).__name__, detail=str(e)), code

    @app.errorhandler(Exception)
    def _unexpected(e: Exception) -> Any:
        log.exception("unexpected_error")
        return jsonify(error="Internal Server Error", detail="unexpected error; see the service log"), 500

    return app


def _services() -> Any:
    return current_app.extensions[EXTENSION]


def _key_status() -> bool | None:
    """True: a valid key was sent; False: a wrong one; None: none at all."""
    key = presented_key(request.headers)
    if key is None:
        return None
    return bool(current_app.extensions[KEYS_EXTENSION].matches(key))


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
    health = _services().health()
    return jsonify(health if status else {"status": health["status"]})


@api.post("/api/ask")
def ask() -> Any:
    services = _services()
    slots: threading.BoundedSemaphore = current_app.extensions[SLOTS_EXTENSION]
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


def _ask(services: Any) -> Any:
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
