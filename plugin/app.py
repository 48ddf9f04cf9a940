"""The Flask application factory: ``create_app(settings=None)``; gunicorn: ``plugin:create_app()``."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from helpdesk_errors import HelpdeskError
from plugin.confirm import confirm_bp
from plugin.registry import webhook_sources
from plugin.settings import Settings, load_settings
from rag.errors import EmptyIndexError
from webhooks import create_blueprint

log = logging.getLogger(__name__)

EXTENSION = "helpdesk_assist"
MAX_TEXT_CHARS = 20_000

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
    app.extensions[EXTENSION] = services
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


@api.get("/healthz")
def healthz() -> Any:
    return jsonify(_services().health())


@api.post("/api/ask")
def ask() -> Any:
    data = request.get_json(silent=True)
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
    result = _services().engine.ask(text, category=category or None, compose=compose)
    return jsonify(result.model_dump())
