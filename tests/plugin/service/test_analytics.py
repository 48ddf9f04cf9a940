"""Issue 13: every number of the analytics report against a small case counted by hand.

Eleven suggestions in January 2026, their histories written event by event (including a confirmation
followed by a reopen within 7 days that must not count as deflected, one reopened only after the
window that must, one confirmed after an agent's reply, one confirmed too recently to judge); the
report is taken as of 2026-01-31 00:00 UTC. The expected numbers are in the comments and the asserts.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest

from plugin.reports.analytics import gaps_csv, render_document, report_csv, report_json
from plugin.service.analytics import build_report, classify, period, threshold_for_target
from plugin.settings import AnalyticsSettings
from plugin.store import Store
from plugin.store.suggestions import EntryRef, Suggestion
from rag.embeddings import HashingEmbedder

NOW = datetime(2026, 1, 31, tzinfo=UTC)
ANSWERS = {"A": "Сброс пароля почты", "B": "Настройка VPN", "C": "Очистка кэша Outlook"}


def ts(day: int, hour: float = 10.0) -> float:
    return datetime(2026, 1, day, tzinfo=UTC).timestamp() + hour * 3600


class Clock:
    def __init__(self) -> None:
        self.now = ts(1)

    def __call__(self) -> float:
        return self.now


def _suggest(store: Store, sid: str, source: str, category: str, mode: str, confidence: float, threshold: float,
             answer: str | None, day: int, query: str = "") -> None:
    entries = [EntryRef(entry_id=f"e-{answer}", answer_id=f"a-{answer}", title=ANSWERS[answer])] if answer else []
    store.suggestions.create(Suggestion(
        id=sid, source=source, ticket_id=sid, created_at=ts(day), mode=mode, language="ru",  # type: ignore[arg-type]
        category=category, confidence=confidence, threshold=threshold, entries=entries, query=query or sid,
    ))


def _outcome(store: Store, clock: Clock, sid: str, outcome: str, at: float, reason: str | None = None) -> None:
    clock.now = at
    store.suggestions.record_outcome(sid, outcome, via="link", reason=reason)  # type: ignore[arg-type]


def fill_january(path) -> Store:
    """The eleven suggestions of the module docstring (and one from December), in the state file at ``path``."""
    clock = Clock()
    store = Store.open(path, clock=clock)
    ev = store.suggestions.add_event
    mail, vpn = "Почта > Outlook", "VPN"
    # s1: confirmed an hour later, never reopened: deflected.
    _suggest(store, "s1", "glpi", mail, "public", 0.9, 0.5, "A", 2)
    _outcome(store, clock, "s1", "solved", ts(2, 11))
    # s2: confirmed, reopened two days later (within 7): reopened, NOT deflected.
    _suggest(store, "s2", "glpi", mail, "public", 0.8, 0.5, "A", 3)
    _outcome(store, clock, "s2", "solved", ts(3, 12))
    ev("s2", "reopened", channel="helpdesk", ref="r1", at=ts(5))
    # s3: rejected, handed off, one agent reply.
    _suggest(store, "s3", "redmine", vpn, "public", 0.7, 0.6, "B", 3, query="Не подключается VPN из дома")
    _outcome(store, clock, "s3", "not_solved", ts(3, 11), reason="not_related")
    ev("s3", "handed_off", channel="helpdesk", at=ts(3, 11))
    ev("s3", "agent_replied", channel="helpdesk", ref="c1", at=ts(3, 15))
    # s4: abstained.
    _suggest(store, "s4", "redmine", vpn, "abstain", 0.2, 0.6, "B", 4, query="VPN не подключается из дома")
    # s5: mail, nobody answered, timed out.
    _suggest(store, "s5", "email", vpn, "public", 0.6, 0.6, "B", 10)
    ev("s5", "timed_out", channel="worker", at=ts(13))
    # s6: confirmed three days before NOW: awaiting (7 days not passed).
    _suggest(store, "s6", "glpi", mail, "public", 0.55, 0.5, "A", 28)
    _outcome(store, clock, "s6", "solved", ts(28, 11))
    # s7: chat, confirmed after an agent had replied: the agent's work, not deflected.
    _suggest(store, "s7", "chat", mail, "public", 0.65, 0.5, "A", 12)
    _outcome(store, clock, "s7", "solved", ts(12, 11), reason="agent_involved")
    # s8: confirmed, reopened 16 days later (after the window): deflected.
    _suggest(store, "s8", "glpi", mail, "public", 0.6, 0.5, "C", 4)
    _outcome(store, clock, "s8", "solved", ts(4, 11))
    ev("s8", "reopened", channel="helpdesk", ref="r2", at=ts(20))
    # s9: rejected.
    _suggest(store, "s9", "glpi", mail, "public", 0.52, 0.5, "C", 6, query="Outlook просит пароль каждый час")
    _outcome(store, clock, "s9", "not_solved", ts(6, 12), reason="not_enough")
    # s10, s11: the holdout; closed by an agent after 5 h and 3 h; s11 reopened.
    _suggest(store, "s10", "redmine", vpn, "holdout", 0.75, 0.6, "B", 7)
    ev("s10", "agent_replied", channel="helpdesk", ref="c2", at=ts(7, 12))
    ev("s10", "agent_replied", channel="helpdesk", ref="c3", at=ts(7, 14))
    ev("s10", "closed_by_agent", channel="helpdesk", at=ts(7, 15))
    _suggest(store, "s11", "redmine", vpn, "holdout", 0.8, 0.6, "B", 8)
    ev("s11", "agent_replied", channel="helpdesk", ref="c4", at=ts(8, 11))
    ev("s11", "closed_by_agent", channel="helpdesk", at=ts(8, 13))
    ev("s11", "reopened", channel="helpdesk", ref="r3", at=ts(9))
    # Outside the period (December): never counted.
    clock.now = ts(1)
    store.suggestions.create(Suggestion(id="old", source="glpi", ticket_id="old", created_at=ts(1) - 5 * 86400,
                                        mode="public", language="ru"))
    return store


@pytest.fixture
def store(tmp_path):
    store = fill_january(tmp_path / "state.sqlite3")
    yield store
    store.close()


def _report(store: Store, **kw):
    since, until = period("2026-01-01", "2026-01-31")
    return build_report(store.analytics, AnalyticsSettings(gap_min_size=2), since=since, until=until, now=NOW, **kw)


def test_funnel_totals_by_hand(store):
    t = _report(store).total
    assert (t.seen, t.answered, t.shown, t.held_out, t.abstained) == (11, 10, 8, 2, 1)
    # confirmed: s1 s2 s6 s7 s8; deflected: s1 s8; reopened: s2; awaiting: s6; agent's work: s7.
    assert (t.confirmed, t.deflected, t.reopened, t.awaiting, t.agent_involved) == (5, 2, 1, 1, 1)
    assert (t.rejected, t.handed_off, t.timed_out, t.no_answer) == (2, 1, 1, 0)
    assert t.deflection_rate == pytest.approx(2 / 11)
    assert t.precision == pytest.approx(5 / 7)


def test_funnel_per_channel_and_category(store):
    r = _report(store)
    ch = {f.name: f for f in r.by_channel}
    assert [f.name for f in r.by_channel] == ["GLPI", "Redmine", "chat", "mail"]
    assert (ch["GLPI"].seen, ch["GLPI"].confirmed, ch["GLPI"].deflected, ch["GLPI"].rejected, ch["GLPI"].awaiting) == (
        5, 4, 2, 1, 1)
    assert (ch["Redmine"].seen, ch["Redmine"].abstained, ch["Redmine"].held_out, ch["Redmine"].handed_off) == (4, 1, 2, 1)
    assert (ch["mail"].seen, ch["mail"].timed_out, ch["mail"].deflected) == (1, 1, 0)
    assert (ch["chat"].confirmed, ch["chat"].agent_involved, ch["chat"].deflected) == (1, 1, 0)
    cat = {f.name: f for f in r.by_category}
    assert (cat["Почта"].seen, cat["Почта"].deflected, cat["Почта"].reopened) == (6, 2, 1)
    assert (cat["VPN"].seen, cat["VPN"].rejected, cat["VPN"].deflected) == (5, 1, 0)


def test_by_day_and_week(store):
    r = _report(store)
    assert len(r.by_day) == 31 and r.by_day[0].name == "2026-01-01"
    day = {f.name: f for f in r.by_day}
    assert day["2026-01-03"].seen == 2 and day["2026-01-03"].rejected == 1 and day["2026-01-03"].reopened == 1
    assert day["2026-01-15"].seen == 0
    assert sum(f.seen for f in r.by_week) == 11
    week = {f.name: f for f in r.by_week}
    # 2026-01-01 is a Thursday of ISO week 1: s1 (2nd), s2 s3 (3rd), s4 s8 (4th).
    assert week["2026-W01"].seen == 5 and week["2026-W01"].deflected == 2


def test_entries_that_work_and_that_are_rejected(store):
    r = _report(store)
    working = {e.answer_id: e for e in r.entries_working}
    assert [e.answer_id for e in r.entries_working] == ["a-A", "a-C"]
    assert (working["a-A"].suggested, working["a-A"].confirmed, working["a-A"].deflected) == (4, 4, 1)
    assert working["a-C"].confirmation_rate == pytest.approx(0.5)
    assert [(e.answer_id, e.suggested, e.rejected) for e in r.entries_rejected] == [("a-B", 2, 1)]


def test_precision_and_threshold_for_target(store):
    prec = {c.category: c for c in _report(store).precision}
    mail = prec["Почта"]
    # confidences: .9 C, .8 C, .65 C, .6 C, .55 C, .52 R -> 5/6; at >= .55 all five confirmed.
    assert (mail.confirmed, mail.rejected, mail.threshold) == (5, 1, 0.5)
    assert mail.precision == pytest.approx(5 / 6)
    assert (mail.threshold_for_target, mail.kept_confirmed, mail.kept_rejected) == (0.55, 5, 0)
    vpn = prec["VPN"]
    assert (vpn.confirmed, vpn.rejected, vpn.precision, vpn.threshold_for_target, vpn.threshold) == (0, 1, 0, None, 0.6)
    # A lower target keeps the current threshold's answers.
    assert threshold_for_target([(0.9, True), (0.8, False), (0.7, True)], 0.6) == (0.7, 2, 1)
    assert threshold_for_target([(0.9, False)], 0.5) == (None, 0, 0)


def test_holdout_comparison(store):
    h = _report(store).holdout
    assert h is not None and (h.treated, h.holdout) == (8, 2)
    # resolution: treated s1 1 h, s2 2 h, s6 1 h, s7 1 h, s8 1 h (mean 1.2); holdout 5 h and 3 h (mean 4).
    mean = h.resolution_mean_hours
    assert mean is not None and (mean.n_a, mean.n_b) == (5, 2)
    assert (mean.a, mean.b, mean.estimate) == pytest.approx((1.2, 4.0, -2.8))
    replies = h.agent_replies_per_ticket
    assert replies is not None and (replies.a, replies.b) == pytest.approx((1 / 8, 1.5))
    reopen = h.reopen_rate
    assert reopen is not None and (reopen.a, reopen.b) == pytest.approx((2 / 8, 1 / 2))
    assert reopen.low < reopen.estimate < reopen.high


def test_economics_fed_with_measured_deflection(store):
    r = _report(store)
    s = r.savings
    assert s.deflection == pytest.approx(2 / 11)
    # the seed's formula: d × (10 × 820,000 + 950 × 12,000) = 2/11 × 19,600,000
    assert s.total == pytest.approx(2 / 11 * 19_600_000)
    assert s.tickets_per_month == pytest.approx(11 / (31 / 30.4375))


def test_knowledge_gaps(store):
    r = _report(store, embed=HashingEmbedder().embed)
    # s3 and s4 are the same words; s9 is alone (min size 2).
    assert [(g.size, sorted(g.member_ids), g.categories) for g in r.gaps] == [(2, ["s3", "s4"], [("VPN", 2)])]
    assert r.gaps[0].agent_hours == pytest.approx(2 * 15 / 60)
    rows = list(csv.DictReader(io.StringIO(gaps_csv(r))))
    assert rows[0]["category"] == "VPN" and rows[0]["requests"] == "2" and rows[0]["answer"] == ""
    assert _report(store).gaps_note == "no embedding model given"


def test_classify_edges():
    from plugin.store.analytics import SuggestionFacts

    base = dict(id="x", source="glpi", category="", mode="public", created_at=0.0, confidence=0.9, threshold=0.5,
                answer_id="", answer_title="", decisive_reason=None, timed_out=False, handed_off=False,
                closed_at=None, agent_replies=0)
    week = 7 * 86400.0
    f = SuggestionFacts(decisive="confirmed", decisive_at=0.0, reopened_at=week, **base)  # type: ignore[arg-type]
    assert classify(f, now=10 * week, deflection_days=7) == "reopened"  # exactly at the window's end still counts
    f = SuggestionFacts(decisive="confirmed", decisive_at=0.0, reopened_at=None, **base)  # type: ignore[arg-type]
    assert classify(f, now=week - 1, deflection_days=7) == "awaiting"
    assert classify(f, now=week, deflection_days=7) == "deflected"
    f = SuggestionFacts(decisive="rejected", decisive_at=0.0, reopened_at=None, **base)  # type: ignore[arg-type]
    assert classify(f, now=week, deflection_days=7) is None


def test_exports(store):
    r = _report(store)
    rows = list(csv.DictReader(io.StringIO(report_csv(r))))
    get = {(x["section"], x["group"], x["metric"]): x["value"] for x in rows}
    assert get[("total", "all", "deflected")] == "2" and get[("channel", "GLPI", "seen")] == "5"
    assert get[("precision", "Почта", "threshold_for_target")] == "0.55"
    data = json.loads(report_json(r))
    assert data["total"]["seen"] == 11 and data["total"]["deflection_rate"] == pytest.approx(2 / 11)
    html = render_document(r, language="en")
    assert "<svg" in html and "Почта" in html and "Knowledge gaps" in html
    html_ru = render_document(r, language="ru")
    assert "Аналитика" in html_ru


@pytest.mark.parametrize(("start", "end", "field"), [("2026-13-01", None, "from"), (None, "yesterday", "to"),
                                                      ("2026-02-01", "2026-01-01", "to"),
                                                      ("9999-12-31", "9999-12-31", "from"), (None, "0001-01-05", "to")])
def test_bad_period_names_the_field(start, end, field):
    with pytest.raises(ValueError, match=field):
        period(start, end)


def test_economic_parameters_from_settings_name_a_bad_key():
    from helpdesk_errors import ConfigError
    from plugin.service.analytics import economic_parameters
    from plugin.service.economics import EconomicParameters
    from plugin.settings import ECONOMIC_PARAMETERS, load_settings

    assert set(ECONOMIC_PARAMETERS) == set(EconomicParameters.model_fields)
    assert economic_parameters(AnalyticsSettings(economics={"users": 100, "currency": "EUR"})).users == 100
    env = {"HELPDESK_ASSIST_ANALYTICS__ECONOMICS__SUPPORT_STAFF": "4"}
    assert economic_parameters(load_settings(env=env).analytics).support_staff == 4
    for bad, named in (({"userz": 5}, "userz"), ({"support_staff": -1}, "support_staff"),
                       ({"users": "many"}, "users")):
        with pytest.raises(ConfigError, match=named):
            load_settings(env={}, analytics={"economics": bad})


def test_csv_exports_do_not_run_formulas(tmp_path):
    store = Store.open(tmp_path / "state.sqlite3")
    for i in range(3):
        _suggest(store, f"f{i}", "glpi", "=HYPERLINK(\"http://evil\")", "abstain", 0.1, 0.5, None, 5,
                 query="=cmd|' /C calc'!A0 почта не работает")
    r = build_report(store.analytics, AnalyticsSettings(gap_min_size=2), since=datetime(2026, 1, 1, tzinfo=UTC),
                     until=datetime(2026, 2, 1, tzinfo=UTC), now=NOW,
                     embed=HashingEmbedder().embed)
    for text in (gaps_csv(r), report_csv(r)):
        cells = [c for row in csv.reader(io.StringIO(text)) for c in row]
        assert not any(c.startswith(("=", "+", "@")) for c in cells)
        assert any(c.startswith("'=") for c in cells)
