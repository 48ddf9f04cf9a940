"""The admin console: ``/admin``. Sign-in (local accounts and the directory), the overview, the work
queue, steering at run time, the settings in effect and the audit log.

Every operation is a function of :mod:`plugin.service.console` / :mod:`plugin.service.admin` (the CLI
calls the same ones); this module only reads forms, checks who may do what and renders pages.

- Session: Flask's signed cookie ``hda_admin`` (path ``/admin``, HttpOnly, SameSite=Lax, Secure when
  the request came over HTTPS), holding the login, the role, when it signed in and when it was last
  used: ``admin.idle_timeout_min`` without a request, or ``admin.session_max_h`` after signing in, ends
  it. Signing in starts a fresh session (no fixation).
- CSRF: Flask-WTF's CSRFProtect on every POST under /admin (the login form included); a POST without
  the token, or with a wrong one, is refused with 400 before the view runs, so it changes nothing.
- Roles: analysts see every page; admins also change. A change is refused with 403 for an analyst
  whatever the form says, and its buttons are not shown.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar, cast

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    flash,
    g,
    get_flashed_messages,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from plugin.i18n import N_, words
from plugin.service import admin as admin_service
from plugin.service import console
from plugin.service.outages import banners
from plugin.web import i18n as web_i18n
from plugin.web.context import current_services
from plugin.web.security import page_headers

log = logging.getLogger(__name__)

csrf = CSRFProtect()
admin_bp = Blueprint("admin", __name__, url_prefix="/admin", template_folder="templates")

MAX_FIELD_CHARS = 2000
QUEUE_STATUSES = ("pending", "leased", "dead", "discarded", "done")

#: Flash messages: keys of the catalog.
NOTES = {
    "retried": N_("The item is back in the queue."),
    "not_retried": N_("Only a dead item can be retried."),
    "retried_all": N_("Dead items put back in the queue: {n}."),
    "discarded": N_("The item was discarded; it stays listed with the reason."),
    "not_discarded": N_("Only a pending or dead item can be discarded."),
    "saved": N_("Saved. It applies to the next request."),
    "reset": N_("The override was removed: the file's value applies again."),
    "learned_deleted": N_("The learned pair was deleted."),
    "learned_unknown": N_("There is no such learned pair."),
    "incident_closed": N_("The incident was closed: requests are answered from the knowledge base again."),
    "incident_not_open": N_("This incident is not open."),
    "incident_message": N_("The message about the incident was saved."),
}
ERRORS = {
    "invalid": N_("Wrong login or password."),
    "bad_input": N_("Enter your login and password."),
    "locked": N_("Too many failed attempts. Try again in {minutes} min."),
    "directory_unavailable": N_(
        "The directory cannot be reached right now; try again later or sign in with a local account."
    ),
}

F = TypeVar("F", bound=Callable[..., Any])


class _AdminSessions(SecureCookieSessionInterface):
    """The session cookie is Secure whenever the request itself came over HTTPS (behind a proxy that
    says so, too: ``ProxyFix`` in front of the app), or always when configured."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config.get("SESSION_COOKIE_SECURE")) or request.is_secure


def _install(app: Flask) -> None:
    """Session and CSRF settings for the app this blueprint is registered on."""
    settings = app.extensions["helpdesk_assist"].settings
    key = settings.secret_key.get_secret_value()
    if not app.secret_key:
        # The session is signed with a key derived for this purpose (itsdangerous salts it too);
        # without a configured secret a per-process one: sessions end when the process restarts.
        app.secret_key = ("admin-session:" + key) if key else secrets.token_hex(32)
    app.config.update(
        SESSION_COOKIE_NAME="hda_admin",
        SESSION_COOKIE_PATH="/admin",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=int(settings.admin.session_max_h * 3600),
        WTF_CSRF_CHECK_DEFAULT=False,  # only the console's POSTs (webhooks and the API have their own auth)
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session, which has its own limits
        WTF_CSRF_SSL_STRICT=True,
    )
    app.session_interface = _AdminSessions()
    csrf.init_app(app)
    web_i18n.install(app)


admin_bp.record_once(lambda state: _install(cast(Flask, state.app)))


def _t(key: str) -> str:
    return words(web_i18n.current_language())(key)


def _ip() -> str:
    return request.remote_addr or "?"


def _now() -> float:
    return time.time()


def _user() -> str:
    return cast(str, g.admin_user)


def admin_only(view: F) -> F:
    """A change: 403 for an analyst (whatever the page showed)."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if g.get("admin_role") != "admin":
            current_services().store.admin.audit(actor=_user(), action="refused", target=request.path,
                                                 detail="analyst", ip=_ip())
            abort(403)
        return view(*args, **kwargs)

    return cast(F, wrapped)


@admin_bp.before_request
def _before() -> Any:
    web_i18n.use_language(web_i18n.negotiate_language(request))
    if request.method == "POST":
        if request.endpoint == "admin.kb_import":
            request.max_content_length = int(current_services().settings.admin.max_upload_mb * 1_000_000)
        csrf.protect()
    if request.endpoint in ("admin.login", "admin.static"):
        return None
    signed_in = console_user()
    if signed_in is None:
        if g.get("console_expired"):
            flash("expired")
            return redirect(url_for("admin.login"))
        return redirect(url_for("admin.login", next=request.path))
    g.admin_user, g.admin_role = signed_in
    return None


def console_user() -> tuple[str, str] | None:
    """Who is signed in to the console on this request, and their role; None when nobody (or the session
    expired, is too old, or its account lost the right: the session is ended). Pages served beside the
    console under ``/admin`` (analytics) use it too."""
    login = session.get("user")
    if not login:
        return None
    settings = current_services().settings
    now = _now()
    seen = float(session.get("seen", 0))
    started = float(session.get("started", 0))
    if now - seen > settings.admin.idle_timeout_min * 60 or now - started > settings.admin.session_max_h * 3600:
        session.clear()
        g.console_expired = True
        return None
    role = console.session_role(current_services().store, login, via=str(session.get("via", "")),
                                role=session.get("role"), started=started)
    if role is None:
        session.clear()
        return None
    session["seen"] = now
    return str(login), role


@admin_bp.after_request
def _after(response: Response) -> Response:
    response.headers.update(page_headers())
    return web_i18n.remember_language(response, request, web_i18n.current_language())


@admin_bp.errorhandler(CSRFError)
def _csrf_error(e: CSRFError) -> tuple[str, int]:
    log.info("admin_csrf_refused: %s %s", request.path, e.description)
    return _error_page(400, N_("The form was refused"),
                       N_("The form expired or did not come from this console. Reload the page and try again.")), 400


@admin_bp.errorhandler(HTTPException)
def _http_error(e: HTTPException) -> tuple[str, int]:
    code = e.code or 500
    if code == 403:
        return _error_page(403, N_("Not allowed"), N_("Your role can see this console but not change it.")), 403
    if code == 404:
        return _error_page(404, N_("Not found"), N_("There is no such page or item.")), 404
    return _error_page(code, N_("The request was not accepted"), N_("Check what you entered and try again.")), code


def _error_page(code: int, title: str, body: str) -> str:
    return _render("admin/error.html", title=_t(title), body=_t(body), code=code)


def _render(template: str, **context: Any) -> str:
    notes = []
    for key in get_flashed_messages():
        text, _, arg = str(key).partition(":")
        if text == "expired":
            notes.append(("warn", _t(N_("Your session ended after a while without use. Please sign in again."))))
        elif text in NOTES:
            notes.append(("ok", _t(NOTES[text]).format(n=arg)))
    return render_template(
        template, lang=web_i18n.current_language(), user=g.get("admin_user"), role=g.get("admin_role"),
        can_change=g.get("admin_role") == "admin", notes=notes, when=_when,
        banners=banners(current_services().store, web_i18n.current_language()) if g.get("admin_user") else [],
        **context,
    )


def _when(ts: float | None) -> str:
    if not ts:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _field(name: str, *, required: bool = True, max_chars: int = MAX_FIELD_CHARS) -> str:
    value = request.form.get(name, "")
    if (required and not value.strip()) or len(value) > max_chars:
        abort(400)
    return value


# -- sign-in ------------------------------------------------------------------------------------------
@admin_bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    error = ""
    status = 200
    if request.method == "POST":
        name = request.form.get("login", "")[:300]
        password = request.form.get("password", "")[:2000]
        result = current_services().accounts.sign_in(name, password, ip=_ip())
        if result.ok:
            session.clear()
            session.permanent = True
            now = _now()
            session.update(user=result.login, role=result.role, via=result.via, started=now, seen=now)
            target = request.args.get("next", "")
            if not target.startswith("/admin/") or target.startswith("//"):
                target = url_for("admin.overview")
            return redirect(target)
        minutes = max(1, round(result.retry_after_s / 60))
        error = _t(ERRORS.get(result.error, ERRORS["invalid"])).format(minutes=minutes)
        status = 429 if result.error == "locked" else (503 if result.error == "directory_unavailable" else 401)
    return _render("admin/login.html", error=error, login_value=request.form.get("login", "")[:300]), status


@admin_bp.route("/logout", methods=["POST"])
def logout() -> Any:
    current_services().store.admin.audit(actor=_user(), action="sign_out", ip=_ip())
    session.clear()
    return redirect(url_for("admin.login"))


# -- overview -----------------------------------------------------------------------------------------
@admin_bp.route("/")
def overview() -> Any:
    services = current_services()
    return _render("admin/overview.html", health=services.health(), last_24h=console.last_24h(services.store),
                   checks=None, incidents=services.store.incidents.find(status="open"))


@admin_bp.route("/check")
def check() -> Any:
    """Run ``helpdesk-assist check`` now (reads only: analysts may run it too)."""
    services = current_services()
    lines = admin_service.check(services.settings, language=web_i18n.current_language())
    services.store.admin.audit(actor=_user(), action="check", detail=f"{sum(not x.ok for x in lines)} to fix",
                               ip=_ip())
    return _render("admin/overview.html", health=services.health(), last_24h=console.last_24h(services.store),
                   checks=lines, incidents=services.store.incidents.find(status="open"))


@admin_bp.route("/incidents/<incident_id>/close", methods=["POST"])
@admin_only
def incident_close(incident_id: str) -> Any:
    services = current_services()
    ok = console.close_incident(services.store, services.outages, incident_id[:100], by=_user(), ip=_ip())
    flash("incident_closed" if ok else "incident_not_open")
    return redirect(url_for("admin.overview"))


@admin_bp.route("/incidents/<incident_id>/message", methods=["POST"])
@admin_only
def incident_message(incident_id: str) -> Any:
    text = _field("message", required=False, max_chars=1000)
    ok = console.set_incident_message(current_services().store, incident_id[:100], text, by=_user(), ip=_ip())
    if not ok:
        abort(404)
    flash("incident_message")
    return redirect(url_for("admin.overview"))


# -- the work queue -----------------------------------------------------------------------------------
@admin_bp.route("/queue")
def queue() -> Any:
    store = current_services().store
    status = request.args.get("status") or None
    if status is not None and status not in QUEUE_STATUSES:
        status = None
    items = admin_service.queue_items(store, status=status, limit=200)
    kinds = sorted({i.kind for i in admin_service.queue_items(store, status="dead", limit=1000)})
    return _render("admin/queue.html", counts=admin_service.queue_counts(store), items=items, status=status,
                   statuses=QUEUE_STATUSES, dead_kinds=kinds)


@admin_bp.route("/queue/<int:item_id>/retry", methods=["POST"])
@admin_only
def queue_retry(item_id: int) -> Any:
    ok = console.retry_item(current_services().store, item_id, by=_user(), ip=_ip())
    flash("retried" if ok else "not_retried")
    return redirect(url_for("admin.queue", status=request.args.get("status") or None))


@admin_bp.route("/queue/retry-dead", methods=["POST"])
@admin_only
def queue_retry_dead() -> Any:
    kind = request.form.get("kind", "")[:100] or None
    n = console.retry_dead(current_services().store, kind=kind, by=_user(), ip=_ip())
    flash(f"retried_all:{n}")
    return redirect(url_for("admin.queue"))


@admin_bp.route("/queue/<int:item_id>/discard", methods=["POST"])
@admin_only
def queue_discard(item_id: int) -> Any:
    reason = _field("reason")
    ok = console.discard_item(current_services().store, item_id, reason=reason, by=_user(), ip=_ip())
    flash("discarded" if ok else "not_discarded")
    return redirect(url_for("admin.queue"))


# -- steering -----------------------------------------------------------------------------------------
def _categories() -> list[str]:
    stats = current_services().engine.stats()
    return [c for c in stats.get("categories_level1", {}) if c != "(none)"]


@admin_bp.route("/steering")
def steering() -> Any:
    services = current_services()
    view = console.steering(services.settings, services.store, _categories(),
                            engine_default=services.engine.default_threshold())
    return _render("admin/steering.html", s=view, error="", fmt=_fmt, entries_off=_entries_off())


def _entries_off() -> list[tuple[str, str]]:
    services = current_services()
    off = console.disabled_entries(services.store)
    titles = {e.id: e.title for e in services.engine.store.entries() if e.id in off}
    return sorted((entry_id, titles.get(entry_id, "")) for entry_id in off)


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return _t(N_("on")) if value else _t(N_("off"))
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False) if value else "—"
    return "—" if value is None else str(value)


def _switch(name: str) -> bool:
    value = _field(name)
    if value not in ("on", "off"):
        abort(400)
    return value == "on"


@admin_bp.route("/steering", methods=["POST"])
@admin_only
def steering_change() -> Any:
    services = current_services()
    settings, store = services.settings, services.store
    what = _field("what", max_chars=100)
    by, ip = _user(), _ip()
    try:
        if what == "reset":
            key = _field("key", max_chars=100)
            console.set_override(store, settings, key, None, by=by, ip=ip)
            flash("reset")
            return redirect(url_for("admin.steering"))
        if what == "shadow":
            source = _field("source", max_chars=50)
            key = "shadow_mode" if source == "*" else f"shadow.{source}"
            console.set_override(store, settings, key, _switch("value"), by=by, ip=ip)
        elif what == "threshold":
            console.set_override(store, settings, "threshold", _field("value", max_chars=20), by=by, ip=ip)
        elif what == "lifetime":
            console.set_override(store, settings, "links.lifetime_days", _field("value", max_chars=20), by=by, ip=ip)
        elif what == "category":
            category = _field("category", max_chars=300)
            if "enabled" in request.form:
                console.switch_category(store, settings, category, enabled=_switch("enabled"), by=by, ip=ip)
            if "threshold" in request.form:
                console.set_category_threshold(store, settings, category,
                                               _field("threshold", required=False, max_chars=20).strip() or None,
                                               by=by, ip=ip)
        else:
            abort(400)
    except ValueError as e:
        view = console.steering(settings, store, _categories(),
                                engine_default=current_services().engine.default_threshold())
        return _render("admin/steering.html", s=view, error=str(e), fmt=_fmt, entries_off=_entries_off()), 400
    flash("saved")
    return redirect(url_for("admin.steering"))


# -- tickets, mail and chats -------------------------------------------------------------------------
@admin_bp.route("/tickets")
def tickets() -> Any:
    store = current_services().store
    q = request.args.get("q", "")[:256]
    sources = console.ticket_sources(store)
    source = request.args.get("source") or None
    if source not in sources:
        source = None
    rows = console.search_tickets(store, q, source=source, limit=200)
    return _render("admin/tickets.html", rows=rows, q=q, source=source, sources=sources)


@admin_bp.route("/tickets/<suggestion_id>")
def ticket(suggestion_id: str) -> Any:
    services = current_services()
    if len(suggestion_id) > 64:
        abort(404)
    record = console.ticket_record(services.store, services.connectors, suggestion_id)
    if record is None:
        abort(404)
    return _render("admin/ticket.html", r=record, s=record.suggestion)


# -- knowledge base -----------------------------------------------------------------------------------
UPLOAD_SUFFIXES = (".xlsx", ".csv")


@admin_bp.route("/kb")
def kb() -> Any:
    services = current_services()
    q = request.args.get("q", "")[:256]
    rows = console.kb_search(services.engine, q, limit=100) if q else []
    return _render("admin/kb.html", q=q, rows=rows, disabled=console.disabled_entries(services.store),
                   rejected=console.most_rejected(services.store), stats=services.engine.stats())


@admin_bp.route("/kb/entry")
def kb_entry() -> Any:
    services = current_services()
    view = console.kb_entry(services.engine, services.store, request.args.get("id", "")[:512])
    if view is None:
        abort(404)
    return _render("admin/kb_entry.html", v=view, e=view.entry)


@admin_bp.route("/kb/entry", methods=["POST"])
@admin_only
def kb_entry_switch() -> Any:
    services = current_services()
    entry_id = _field("entry_id", max_chars=512)
    try:
        console.set_entry_enabled(services.engine, services.store, services.settings, entry_id,
                                  enabled=_switch("enabled"), by=_user(), ip=_ip())
    except ValueError:
        abort(404)
    flash("saved")
    return redirect(url_for("admin.kb_entry", id=entry_id))


@admin_bp.route("/kb/learned")
def kb_learned() -> Any:
    services = current_services()
    titles = {e.id: e.title for e in services.engine.store.entries()}
    return _render("admin/kb_learned.html", pairs=console.learned_pairs(services.engine), titles=titles)


@admin_bp.route("/kb/learned/<int:pair_id>/delete", methods=["POST"])
@admin_only
def kb_learned_delete(pair_id: int) -> Any:
    services = current_services()
    ok = console.forget_learned(services.engine, services.store, pair_id, by=_user(), ip=_ip())
    flash("learned_deleted" if ok else "learned_unknown")
    return redirect(url_for("admin.kb_learned"))


@admin_bp.route("/kb/import", methods=["POST"])
@admin_only
def kb_import() -> Any:
    services = current_services()
    upload = request.files.get("file")
    name = Path(upload.filename or "").name if upload is not None else ""
    if upload is None or not name.lower().endswith(UPLOAD_SUFFIXES):
        return _error_page(400, N_("The request was not accepted"), N_("Choose an .xlsx or .csv file to import.")), 400
    folder = services.settings.data_dir / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{secrets.token_hex(8)}{Path(name).suffix.lower()}"
    upload.save(path)
    job = services.kb_imports.start(path, name, by=_user(), ip=_ip())
    return redirect(url_for("admin.kb_import_status", job_id=job.id))


@admin_bp.route("/kb/import/<job_id>")
def kb_import_status(job_id: str) -> Any:
    job = current_services().kb_imports.get(job_id[:32])
    if job is None:
        abort(404)
    if request.headers.get("HX-Request") == "true":
        return render_template("admin/kb_import_progress.html", job=job, when=_when)
    return _render("admin/kb_import.html", job=job, use_htmx=True)


# -- settings and audit -------------------------------------------------------------------------------
@admin_bp.route("/settings")
def settings_page() -> Any:
    return _render("admin/settings.html", rows=console.settings_in_effect(current_services().settings))


@admin_bp.route("/audit")
def audit() -> Any:
    store = current_services().store
    actor = request.args.get("actor", "")[:256]
    action = request.args.get("action", "")[:64]
    text = request.args.get("q", "")[:256]
    entries = console.audit_entries(store, actor=actor, action=action, text=text)
    return _render("admin/audit.html", entries=entries, actions=console.audit_actions(store), actor=actor,
                   action=action, q=text, dump=_dump)


def _dump(value: Any) -> str:
    return "" if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)
