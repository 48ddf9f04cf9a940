"""The analytics and economic pages, under ``/admin``: ``GET /admin/analytics``
(``?from=&to=&format=html|csv|json&lang=``), ``GET /admin/analytics/gaps.csv`` and
``GET /admin/analytics/economics`` (``?from=&to=&<parameter>=&deflection=&projection=&format=csv``).

They are pages of the admin console (under ``/admin``, in its navigation): anyone signed in to it, analyst
or admin, sees them; a script fetches the CSV / JSON with the API key of ``/api`` (``Authorization: Bearer``
or ``X-API-Key``) instead; ``analytics.open_without_key`` opens them to a trusted network.
Every request only reads: forms use GET and change nothing. Bad input is a 400 naming the field.
The numbers come from :mod:`plugin.service.analytics`, the rendering from :mod:`plugin.reports.analytics`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, jsonify, redirect, render_template, request, url_for
from pydantic import ValidationError

from plugin.reports.analytics import (
    PARAMETERS,
    EconomicView,
    economics_csv,
    gaps_csv,
    render_body,
    render_economics_body,
    report_csv,
    report_json,
)
from plugin.service.analytics import Report, build_report, economic_parameters, period
from plugin.service.apikeys import presented_key
from plugin.service.economics import EconomicParameters
from plugin.service.outages import banners
from plugin.web import i18n as web_i18n
from plugin.web.admin import console_user
from plugin.web.api import API_EXTENSION, ApiState
from plugin.web.context import current_services
from plugin.web.security import page_headers

analytics_bp = Blueprint("analytics", __name__, template_folder="templates", url_prefix="/admin")

_FORMATS = ("html", "csv", "json")


def _download(text: str, name: str) -> Response:
    return Response(text, mimetype="text/csv",
                    headers={"Content-Disposition": f"attachment; filename={name}", "Cache-Control": "no-store"})


@analytics_bp.record_once
def _install(state: Any) -> None:
    web_i18n.install(state.app)


def _allowed() -> bool:
    if current_services().settings.analytics.open_without_key:
        return True
    key = presented_key(request.headers)
    if key is not None:
        state: ApiState | None = current_app.extensions.get(API_EXTENSION)
        return state is not None and state.keys.matches(key)
    return console_user() is not None


@analytics_bp.before_request
def _require_key() -> Any:
    if _allowed():
        return None
    if request.args.get("format", "html") == "html" and not request.path.endswith(".csv") and (
            presented_key(request.headers) is None):
        return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))
    response = jsonify(error="Unauthorized",
                       detail="sign in to the admin console, or send an API key: 'Authorization: Bearer <key>' "
                       "or 'X-API-Key: <key>' (or set analytics.open_without_key on a trusted network)")
    response.headers["WWW-Authenticate"] = 'Bearer realm="helpdesk-assist"'
    return response, 401


def _bad(detail: str, fmt: str) -> Any:
    if fmt == "html":
        lang = web_i18n.use_language(web_i18n.negotiate_language(request))
        html = render_template("analytics.html", lang=lang, body=None, error=detail, nav="analytics")
        return Response(html, 400, headers=page_headers(), mimetype="text/html")
    return jsonify(error="Bad Request", detail=detail), 400


def _arg(name: str) -> str | None:
    value = request.args.get(name)
    return value if value and value.strip() else None


def _report(fmt: str, *, gaps: bool = True) -> Report | Any:
    settings = current_services().settings.analytics
    try:
        since, until = period(_arg("from"), _arg("to"))
        target = None
        if _arg("target") is not None:
            target = float(request.args["target"])
            if not (0 < target <= 1 and math.isfinite(target)):
                raise ValueError
    except ValueError as e:
        detail = str(e) if str(e) else "target: expected a precision between 0 and 1"
        return _bad(detail, fmt)
    services = current_services()
    return build_report(
        services.store.analytics, settings, since=since, until=until, now=datetime.now(UTC),
        embed=services.engine.embedder.embed if gaps else None, target_precision=target,
    )


@analytics_bp.get("/analytics")
def analytics_page() -> Any:
    fmt = request.args.get("format", "html")
    if fmt not in _FORMATS:
        return _bad(f"format: expected one of {', '.join(_FORMATS)}", "json")
    # Knowledge gaps cluster up to analytics.gap_max_requests texts with the encoder: on request only
    # (?gaps=1, the CSV and JSON exports, /analytics/gaps.csv), not at every look at the page.
    report = _report(fmt, gaps=fmt != "html" or request.args.get("gaps") == "1")
    if not isinstance(report, Report):
        return report
    if fmt == "csv":
        return _download(report_csv(report), "analytics.csv")
    if fmt == "json":
        return Response(report_json(report), mimetype="application/json", headers={"Cache-Control": "no-store"})
    lang = web_i18n.use_language(web_i18n.negotiate_language(request))
    link = "?" + urlencode({**{k: v for k, v in request.args.items() if k != "gaps"}, "gaps": "1"}) + "#gaps"
    html = render_template("analytics.html", lang=lang, body=render_body(report, language=lang, gaps_link=link),
                           error=None,
                           values={k: request.args.get(k, "") for k in ("from", "to")}, nav="analytics",
                           banners=banners(current_services().store, lang))
    return web_i18n.remember_language(Response(html, headers=page_headers(), mimetype="text/html"), request, lang)


@analytics_bp.get("/analytics/gaps.csv")
def gaps_export() -> Any:
    report = _report("csv")
    if not isinstance(report, Report):
        return report
    return _download(gaps_csv(report), "knowledge-gaps.csv")


def _number(name: str, *, low: float = 0.0, high: float = math.inf) -> float | None:
    raw = _arg(name)
    if raw is None:
        return None
    value = float(raw.replace(",", ".").replace("\u202f", "").replace(" ", ""))
    if not math.isfinite(value) or not low <= value <= high:
        raise ValueError
    return value


@analytics_bp.get("/analytics/economics")
def economics_page() -> Any:
    fmt = request.args.get("format", "html")
    if fmt not in ("html", "csv"):
        return _bad("format: expected html or csv", "json")
    settings = current_services().settings.analytics
    errors: dict[str, str] = {}
    over: dict[str, float] = {}
    for name, _ in PARAMETERS:
        try:
            value = _number(name, high=1e12)
        except ValueError:
            errors[name] = f"{name}: expected a number from 0 to 10^12"
            continue
        if value is not None:
            over[name] = value
    extra: dict[str, float | None] = {}
    for name, high in (("deflection", 1.0), ("projection", 1e9)):
        try:
            extra[name] = _number(name, high=high)
        except ValueError:
            errors[name] = f"{name}: expected a number between 0 and {high:g}"
            extra[name] = None
    base = economic_parameters(settings)
    try:
        p = EconomicParameters(**{**base.model_dump(), **over})
    except ValidationError as e:
        for err in e.errors():
            field = str(err["loc"][0]) if err["loc"] else "parameters"
            errors[field] = f"{field}: {err['msg']}"
        p = base
    report = _report(fmt, gaps=False)
    if not isinstance(report, Report):
        return report
    measured = extra["deflection"] is None
    deflection = report.savings.deflection if measured else float(extra["deflection"] or 0.0)
    view = EconomicView(p, deflection=deflection, tickets_per_month=report.savings.tickets_per_month or 0.0,
                        measured=measured, projection_tickets_per_month=extra["projection"])
    if errors and fmt == "csv":
        return jsonify(error="Bad Request", detail="; ".join(errors.values())), 400
    if fmt == "csv":
        return _download(economics_csv(view), "economics.csv")
    lang = web_i18n.use_language(web_i18n.negotiate_language(request))
    values = {k: v for k, v in request.args.items() if k != "lang"}
    body = render_economics_body(view, language=lang, errors=errors, values=values)
    html = render_template("analytics.html", lang=lang, body=body, error=None, values=values, nav="economics",
                           banners=banners(current_services().store, lang))
    response = Response(html, 400 if errors else 200, headers=page_headers(), mimetype="text/html")
    return web_i18n.remember_language(response, request, lang)
