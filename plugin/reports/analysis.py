"""The replay report: one self-contained HTML page (inline SVG charts, inline CSS, no JavaScript).

:func:`run_analysis` is what the ``analyze`` command calls: it builds the configured embedder and LLM
from the settings, runs :func:`plugin.service.replay.analyze` and writes the page.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from plugin.reports.svg import columns, hbars
from plugin.service.economics import SEED_DEFLECTION, EconomicParameters, savings
from plugin.service.replay import AnalysisResult, ReplayOptions, analyze

if TYPE_CHECKING:
    from plugin.settings import Settings

log = logging.getLogger(__name__)

_HISTORY, _ABSTAIN, _ANSWERED, _MATCHED = "#c9ced8", "#e8a33d", "#7fa7d9", "#3b8c5a"
SERIES = (
    ("knowledge base (not replayed)", _HISTORY),
    ("not answered", _ABSTAIN),
    ("answered, not matched", _ANSWERED),
    ("answered and matched", _MATCHED),
)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("plugin.reports", "templates"), autoescape=select_autoescape(["html"]))
    env.globals.update(pct=_pct)
    return env


def _stack(tickets: int, replayed: int, answered: int, matched: int) -> list[float]:
    return [tickets - replayed, replayed - answered, answered - matched, matched]


def render_analysis(result: AnalysisResult, *, options: ReplayOptions | None = None) -> str:
    """The report page for ``result``."""
    currency = result.parameters.currency

    def money(value: float | None) -> str:
        return "–" if value is None else f"{value:,.0f}".replace(",", "\u202f") + f" {currency}"

    month_rows = [(g.name, _stack(g.tickets, g.replayed, g.answered, g.matched)) for g in result.by_month]
    category_rows = [(g.name, _stack(g.tickets, g.replayed, g.answered, g.matched)) for g in result.by_category[:25]]
    replayed_categories = [g for g in result.by_category if g.replayed]
    share_rows = [
        (g.name, [(g.replayed - g.answered) / g.replayed, (g.answered - g.matched) / g.replayed,
                  g.matched / g.replayed])
        for g in replayed_categories[:25]
    ]
    gap_rows = sorted(replayed_categories, key=lambda g: (-g.gap, g.name))
    unmatched = [t for t in result.per_ticket if t.decision == "answer" and t.has_resolution and not t.matched][:50]
    html = _environment().get_template("analysis.html").render(
        r=result,
        options=options or ReplayOptions(),
        money=money,
        seed=savings(result.parameters, SEED_DEFLECTION),
        month_chart=columns(month_rows, SERIES, title="Tickets by month") if month_rows else Markup(
            "<p>The export has no registration times.</p>"),
        category_chart=hbars(category_rows, SERIES, title="Tickets by category (first level)"),
        share_chart=hbars(
            share_rows, SERIES[1:], title="Share of replayed tickets by category", scale_max=1.0,
            value_format=lambda v: f"{100 * v:.0f}%", total=lambda values: values[-1],
        ),
        gap_rows=gap_rows,
        unmatched=unmatched,
    )
    return html


def run_analysis(
    settings: Settings,
    export: Path | str,
    kb: Path | str | None = None,
    as_of: date | datetime | str | None = None,
    out_html: Path | str | None = None,
    *,
    progress: bool = True,
    column_map: Mapping[str, str] | None = None,
    economics: EconomicParameters | None = None,
    projection_tickets_per_month: float | None = None,
    options: ReplayOptions | None = None,
) -> AnalysisResult:
    """Replay ``export`` with the configured models and thresholds; write the HTML report to ``out_html``.

    The configured knowledge base and index are not touched: the replay builds its own in a temporary
    directory. ``economics`` defaults to the seed's parameters (headcounts: our reconstruction).
    """
    from plugin.service.engines import load_configured_embedder, load_configured_llm

    embedder = load_configured_embedder(settings)
    llm, llm_reason = load_configured_llm(settings)
    if llm_reason:
        log.warning("analyze_llm_unavailable: %s; matches are judged by similarity only", llm_reason)
    decision = settings.decision
    opts = options or ReplayOptions(llm_timeout_s=settings.llm.timeout_s)
    result = analyze(
        export,
        kb,
        as_of,
        embedder=embedder,
        llm=llm,
        threshold=decision.threshold,
        category_thresholds=decision.category_thresholds,
        disabled_categories=decision.disabled_categories,
        column_map=column_map,
        economics=economics,
        projection_tickets_per_month=projection_tickets_per_month,
        options=opts,
        progress=progress,
    )
    if out_html is not None:
        path = Path(out_html)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_analysis(result, options=opts), encoding="utf-8")
        log.info("analyze_report_written: %s", path)
    return result
