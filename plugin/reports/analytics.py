"""The analytics report and the economic report, rendered: HTML (a fragment for the web page, or a whole
document for ``helpdesk-assist report``), CSV and JSON. The numbers come from
:func:`plugin.service.analytics.build_report`; nothing here counts anything.

Every text a person reads is a key of the ru/en catalogs (``plugin.i18n``); charts are server-rendered
SVG (:mod:`plugin.reports.svg`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from plugin.i18n import N_, Language, normalize, words
from plugin.reports.svg import columns, hbars
from plugin.service.analytics import Funnel, Report
from plugin.service.economics import (
    SEED_DEFLECTION,
    EconomicParameters,
    Savings,
    annual_staff_cost,
    hourly_staff_cost,
    projection,
    savings,
)

#: The stacked series of the funnel charts, in stacking order: their sum is the requests seen.
FUNNEL_SERIES: tuple[tuple[str, str, Callable[[Funnel], float]], ...] = (
    (N_("deflected"), "#2e7d32", lambda f: f.deflected),
    (N_("confirmed, not (yet) deflected"), "#9ccc65", lambda f: f.confirmed - f.deflected),
    (N_("rejected"), "#c62828", lambda f: f.rejected),
    (N_("answered, no answer from the requester"), "#7fa7d9", lambda f: f.answered - f.confirmed - f.rejected),
    (N_("abstained"), "#e8a33d", lambda f: f.abstained),
    (N_("known problem (outage)"), "#8a8f99", lambda f: f.incident),
)

#: (field, label) of every economic parameter, in the order shown.
PARAMETERS: tuple[tuple[str, str], ...] = (
    ("support_staff", N_("First-line support staff, people")),
    ("users", N_("Users the helpdesk serves, people")),
    ("staff_cost_per_month", N_("Support staff cost per person-month")),
    ("training_cost_per_year", N_("Training per support person-year")),
    ("downtime_hours_per_user_month", N_("Hours a user loses waiting for support per month")),
    ("downtime_cost_per_hour", N_("Cost of an hour of user downtime")),
    ("agent_minutes_per_ticket", N_("Minutes of agent time per ticket")),
    ("working_hours_per_month", N_("Working hours per person-month")),
)
#: Where the default of each parameter comes from.
ORIGINS = {
    "support_staff": N_("our reconstruction of the seed"),
    "users": N_("our reconstruction of the seed"),
    "agent_minutes_per_ticket": N_("not in the seed: measure yours"),
    "working_hours_per_month": N_("40-hour week"),
}


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}".replace(",", "\u202f")


@cache
def _environment(language: Language) -> Environment:
    env = Environment(
        loader=PackageLoader("plugin.reports", "templates"),
        autoescape=select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
    )
    tr = words(language)
    env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=lambda key, **_: tr(key), ngettext=lambda s, p, n, **_: tr(s if n == 1 else p), newstyle=True
    )
    env.globals.update(pct=_pct, num=_num, lang=language)
    return env


def _series(language: Language) -> list[tuple[str, str]]:
    tr = words(language)
    return [(tr(name), colour) for name, colour, _ in FUNNEL_SERIES]


def _rows(funnels: Iterable[Funnel]) -> list[tuple[str, list[float]]]:
    return [(f.name, [float(get(f)) for _, _, get in FUNNEL_SERIES]) for f in funnels]


def funnel_chart(funnels: list[Funnel], title: str, language: Language, *, vertical: bool = False,
                 label: Callable[[str], str] = str) -> Markup:
    """A stacked chart of the funnel series; the legend is the page's (:func:`legend`), so it wraps on a phone."""
    rows = [(label(name), values) for name, values in _rows(funnels)]
    if vertical:
        return columns(rows, _series(language), title=title, legend=False)
    # Narrower than the replay report's charts: still legible when a phone scales them down.
    return hbars(rows, _series(language), title=title, legend=False, width=560, label_width=150)


def legend(language: Language) -> Markup:
    """The funnel series' colours as an HTML list (wraps, read by screen readers)."""
    items = "".join(
        f'<li><svg width="12" height="12" aria-hidden="true" focusable="false"><rect width="12" height="12" '
        f'fill="{escape(colour)}"/></svg> {escape(name)}</li>' for name, colour in _series(language)
    )
    return Markup(f'<ul class="legend">{items}</ul>')  # noqa: S704 - every text is escaped


def _money_fn(currency: str) -> Callable[[float | None], str]:
    def money(value: float | None) -> str:
        return "–" if value is None else f"{_num(value)} {currency}"

    return money


def _parameter_rows(p: EconomicParameters, language: Language) -> list[dict[str, Any]]:
    tr = words(language)
    defaults = EconomicParameters()
    out = []
    for name, label in PARAMETERS:
        value = getattr(p, name)
        origin = ORIGINS.get(name, N_("the seed")) if value == getattr(defaults, name) else N_("yours")
        out.append({"name": name, "label": tr(label), "value": value, "origin": tr(origin)})
    return out


def render_body(report: Report, *, language: str = "ru", gaps_link: str | None = None) -> Markup:
    """The report as an HTML fragment (for a page of the web console). ``gaps_link``: where the knowledge
    gaps are computed when this report has none computed (clustering takes the encoder a while)."""
    lang = normalize(language)
    _ = words(lang)
    days = report.by_day
    env = _environment(lang)
    html = env.get_template("analytics_body.html").render(
        r=report,
        money=_money_fn(report.parameters.currency),
        day_chart=funnel_chart(days, _("Requests by day"), lang, vertical=True, label=lambda d: d[5:])
        if len(days) <= 120 else None,
        week_chart=funnel_chart(report.by_week, _("Requests by week"), lang, vertical=True,
                                label=lambda w: w.split("-", 1)[-1]),
        legend=legend(lang),
        channel_chart=funnel_chart(report.by_channel, _("Requests by channel"), lang),
        category_chart=funnel_chart(report.by_category[:25], _("Requests by category"), lang),
        parameters=_parameter_rows(report.parameters, lang),
        gaps_link=gaps_link,
    )
    return Markup(html)  # noqa: S704 - rendered by an autoescaping template


def render_document(report: Report, *, language: str = "ru") -> str:
    """The report as one self-contained HTML file (``helpdesk-assist report --format html``)."""
    lang = normalize(language)
    return _environment(lang).get_template("analytics_document.html").render(body=render_body(report, language=lang))


class EconomicView:
    """What the economic page shows: the parameters, the measured deflection and volume, a projection."""

    def __init__(
        self, p: EconomicParameters, *, deflection: float, tickets_per_month: float, measured: bool,
        projection_tickets_per_month: float | None = None,
    ):
        self.p = p
        self.deflection = deflection
        self.tickets_per_month = tickets_per_month
        self.measured = measured
        self.current: Savings = savings(p, deflection, tickets_per_month=tickets_per_month)
        self.seed: Savings = savings(p, SEED_DEFLECTION, tickets_per_month=tickets_per_month)
        self.projection_tickets_per_month = projection_tickets_per_month
        self.projected: Savings | None = None
        if projection_tickets_per_month is not None:
            base = tickets_per_month if tickets_per_month > 0 else None
            self.projected = projection(p, deflection, projection_tickets_per_month, base_tickets_per_month=base)
        self.annual_staff_cost = annual_staff_cost(p)
        self.hourly_staff_cost = hourly_staff_cost(p)


def render_economics_body(view: EconomicView, *, language: str = "ru", errors: dict[str, str] | None = None,
                          values: dict[str, str] | None = None) -> Markup:
    lang = normalize(language)
    html = _environment(lang).get_template("economics_body.html").render(
        v=view, money=_money_fn(view.p.currency), parameters=_parameter_rows(view.p, lang), errors=errors or {},
        values=values or {},
    )
    return Markup(html)  # noqa: S704 - rendered by an autoescaping template


def economics_csv(view: EconomicView) -> str:
    """Every parameter, then each scenario's figures: one ``section,name,value`` row each."""
    buf = io.StringIO()
    w = _SafeWriter(buf)
    w.writerow(["section", "name", "value"])
    for name, _ in PARAMETERS:
        w.writerow(["parameter", name, getattr(view.p, name)])
    w.writerow(["parameter", "currency", view.p.currency])
    w.writerow(["input", "deflection", round(view.deflection, 6)])
    w.writerow(["input", "deflection_measured", view.measured])
    w.writerow(["input", "tickets_per_month", round(view.tickets_per_month, 3)])
    scenarios = [("measured" if view.measured else "chosen", view.current), ("seed_assumption_50pct", view.seed)]
    if view.projected is not None:
        scenarios.append(("projection", view.projected))
    for label, s in scenarios:
        for field, value in s.model_dump().items():
            w.writerow([label, field, "" if value is None else round(value, 4)])
    return buf.getvalue()


class _SafeWriter:
    """A csv writer that keeps a spreadsheet from running a cell as a formula: text written by users (a
    request, a category, an entry's title) that starts with = + - @ or a control character gets a ``'``."""

    def __init__(self, buf: io.StringIO):
        self._w = csv.writer(buf)

    def writerow(self, row: Iterable[object]) -> None:
        self._w.writerow([_cell(v) for v in row])


def _cell(value: object) -> object:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        try:
            float(value)  # a negative number stays a number
            return value
        except ValueError:
            return "'" + value
    return value


def report_csv(report: Report) -> str:
    """The report as long-form CSV: ``section,group,metric,value`` (one number a row)."""
    buf = io.StringIO()
    w = _SafeWriter(buf)
    w.writerow(["section", "group", "metric", "value"])
    fields = [k for k in Funnel.model_fields if k != "name"]
    for section, funnels in (("total", [report.total]), ("channel", report.by_channel),
                             ("category", report.by_category), ("day", report.by_day), ("week", report.by_week)):
        for f in funnels:
            for k in fields:
                w.writerow([section, f.name, k, getattr(f, k)])
            rate = f.deflection_rate
            w.writerow([section, f.name, "deflection_rate", "" if rate is None else round(rate, 6)])
    for section, entries in (("entry_working", report.entries_working), ("entry_rejected", report.entries_rejected)):
        for e in entries:
            for k in ("suggested", "confirmed", "rejected", "deflected"):
                w.writerow([section, e.title or e.answer_id, k, getattr(e, k)])
    for c in report.precision:
        for k in ("threshold", "confirmed", "rejected", "precision", "target", "threshold_for_target"):
            value = getattr(c, k)
            w.writerow(["precision", c.category, k, "" if value is None else value])
    for i, g in enumerate(report.gaps, 1):
        w.writerow(["gap", str(i), "size", g.size])
        w.writerow(["gap", str(i), "agent_hours", g.agent_hours])
        w.writerow(["gap", str(i), "example", g.example])
    if report.holdout is not None:
        for d in (report.holdout.resolution_mean_hours, report.holdout.resolution_median_hours,
                  report.holdout.agent_replies_per_ticket, report.holdout.reopen_rate):
            if d is None:
                continue
            for k in ("a", "b", "n_a", "n_b", "estimate", "low", "high", "confidence"):
                w.writerow(["holdout", d.metric, k, getattr(d, k)])
    for k, value in report.savings.model_dump().items():
        w.writerow(["economics", "measured", k, "" if value is None else value])
    return buf.getvalue()


def gaps_csv(report: Report) -> str:
    """The knowledge gaps as a list of entries to write, importable once answered
    (``kb import FILE --map question=question --map answer=answer --map category1=category``)."""
    buf = io.StringIO()
    w = _SafeWriter(buf)
    w.writerow(["question", "answer", "category", "requests", "agent_hours_saved", "categories"])
    for g in report.gaps:
        top = g.categories[0][0] if g.categories else ""
        w.writerow([g.example, "", top, g.size, g.agent_hours, "; ".join(f"{k} ({n})" for k, n in g.categories)])
    return buf.getvalue()


def report_json(report: Report) -> str:
    data = report.model_dump(mode="json")
    for key in ("total",):
        data[key]["deflection_rate"] = report.total.deflection_rate
    return json.dumps(data, ensure_ascii=False, indent=1)
