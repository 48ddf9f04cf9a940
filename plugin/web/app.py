"""The Flask application factory: ``create_app(settings=None)``; gunicorn: ``plugin.web.app:create_app()``."""

from __future__ import annotations

import logging
import threading
from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from connectors.base import TicketEvent
from helpdesk_errors import HelpdeskError
from plugin import logredact
from plugin.service.apikeys import KeyChecker, accepted_keys
from plugin.service.intake import StoreUnavailable, accept_events
from plugin.service.registry import webhook_sources
from plugin.settings import Settings, load_settings
from plugin.web import i18n as web_i18n
from plugin.web.admin import admin_bp
from plugin.web.analytics import analytics_bp
from plugin.web.api import API_EXTENSION, ApiState, api
from plugin.web.chat import chat_bp
from plugin.web.chat_api import chat_api
from plugin.web.confirm import confirm_bp
from plugin.web.context import EXTENSION, current_services
from plugin.wiring import Services, build_services, ensure_knowledge_base
from rag.errors import EmptyIndexError
from webhooks import Accepted, IntakeUnavailable, create_blueprint

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> Flask:
    """Build the app. Without ``services`` the engine is built from the settings and the knowledge
    base is imported (the bundled sample when nothing is configured) if it is empty."""
    settings = settings or load_settings()
    if services is None:
        services = build_services(settings)
        ensure_knowledge_base(services)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.server.max_body_bytes
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    # Under a gunicorn started by hand (not `serve`), its handlers exist by now: filter them too.
    logredact.install()
    app.extensions[EXTENSION] = services
    app.extensions[API_EXTENSION] = ApiState(
        keys=KeyChecker(accepted_keys(settings)), slots=threading.BoundedSemaphore(settings.api.max_concurrent_asks)
    )
    web_i18n.install(app)
    app.register_blueprint(api)
    app.register_blueprint(confirm_bp)
    app.register_blueprint(analytics_bp)
    app.register_blueprint(admin_bp)
    if settings.chat.enabled:
        app.register_blueprint(chat_bp)
        app.register_blueprint(chat_api)
    app.register_blueprint(
        create_blueprint(
            lambda: webhook_sources(dict(current_services().connectors)),
            lambda: _accept,
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


def _accept(source: str, events: list[TicketEvent]) -> Accepted:
    """The webhooks blueprint's ``accept``: persist before the 2xx; a store that cannot is a 503."""
    try:
        result = accept_events(current_services().pipeline.enqueue_event, events)
    except StoreUnavailable as e:
        raise IntakeUnavailable(str(e)) from e
    return Accepted(new=result.new, duplicates=result.duplicates)
