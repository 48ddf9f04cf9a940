"""The analytics report: what the assistant did and what it was worth, counted from the outcome history.

Definitions (every count is per suggestion, i.e. per request the assistant saw):

* **seen** — every request decided on (answered or not);
* **answered** — confidence at or above the threshold (mode ``public``, ``shadow`` or ``holdout``);
  **shown** — of those, the ones whose requester got the public suggestion (``public``);
* **confirmed** / **rejected** — the first decisive event (the first answer stands);
* **deflected** — confirmed by the requester, without an agent's reply before the confirmation, and
  not reopened within ``deflection_days`` (default 7) of it, with those days passed. A confirmation
  followed by a reopen within the window counts as **reopened**, never as deflected; one whose window
  has not passed yet counts as **awaiting**;
* **handed off**, **timed out** — their events; **abstained** — below the threshold.

The deflection rate is deflected / seen. Precision per category is confirmed / (confirmed + rejected)
of the shown suggestions; the threshold that would have kept a target precision is the lowest
confidence ``t`` at which the shown suggestions with confidence ≥ ``t`` reach it (only raising the
threshold can be judged from what was shown).

The holdout (``analytics.holdout_share``): eligible tickets got only the private note, chosen at
random; :func:`plugin.service.stats.compare_groups` compares them with the shown ones.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from helpdesk_errors import ConfigError
from plugin.service.economics import EconomicParameters, Savings, measured_savings
from plugin.service.stats import GroupOutcomes, HoldoutComparison, compare_groups
from plugin.settings import AnalyticsSettings
from plugin.store.analytics import Analytics, SuggestionFacts
from rag.clusters import Item, cluster

Embed = Callable[[Sequence[str]], np.ndarray]
DAY_S = 86_400.0
NO_CATEGORY = "(none)"
#: The biggest knowledge gaps shown (and exported).
MAX_GAPS = 50
#: Channels by the source a suggestion came from.
CHANNELS = {"glpi": "GLPI", "redmine": "Redmine", "email": "mail", "chat": "chat"}


class Funnel(BaseModel):
    """The counts of one group (a channel, a category, a day, a week, or everything)."""

    name: str
    seen: int = 0
    answered: int = 0
    shown: int = 0
    shadow: int = 0
    held_out: int = 0
    abstained: int = 0
    #: Requests of an open outage incident: told about it instead of an answer.
    incident: int = 0
    confirmed: int = 0
    #: Confirmed after an agent had replied: the agent's work, not counted as deflected.
    agent_involved: int = 0
    deflected: int = 0
    awaiting: int = 0
    reopened: int = 0
    rejected: int = 0
    no_answer: int = 0
    handed_off: int = 0
    timed_out: int = 0

    @property
    def deflection_rate(self) -> float | None:
        return self.deflected / self.seen if self.seen else None

    @property
    def precision(self) -> float | None:
        decided = self.confirmed + self.rejected
        return self.confirmed / decided if decided else None


class EntryStats(BaseModel):
    answer_id: str
    title: str
    suggested: int = 0
    confirmed: int = 0
    rejected: int = 0
    deflected: int = 0

    @property
    def confirmation_rate(self) -> float | None:
        decided = self.confirmed + self.rejected
        return self.confirmed / decided if decided else None


class CategoryPrecision(BaseModel):
    category: str
    threshold: float
    confirmed: int
    rejected: int
    precision: float | None
    target: float
    #: The lowest threshold at which the shown suggestions reach the target (None: none does).
    threshold_for_target: float | None
    #: Confirmed and rejected suggestions at or above that threshold.
    kept_confirmed: int
    kept_rejected: int


class Gap(BaseModel):
    size: int
    example: str
    categories: list[tuple[str, int]]
    agent_hours: float
    member_ids: list[str]


class Report(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    since: datetime
    until: datetime
    generated_at: datetime
    deflection_days: int
    target_precision: float
    total: Funnel
    by_channel: list[Funnel]
    by_category: list[Funnel]
    by_day: list[Funnel]
    by_week: list[Funnel]
    entries_working: list[EntryStats]
    entries_rejected: list[EntryStats]
    precision: list[CategoryPrecision]
    gaps: list[Gap]
    #: Why no gaps were computed (no embedder, nothing to cluster), else None.
    gaps_note: str | None
    #: False when no embedding model was given (the page computes gaps on request only).
    gaps_computed: bool = True
    holdout: HoldoutComparison | None
    parameters: EconomicParameters
    savings: Savings
    months: float

    @property
    def last_day(self) -> str:
        """The last day of the period (``until`` is exclusive)."""
        return (self.until - timedelta(seconds=1)).strftime("%Y-%m-%d")


def economic_parameters(settings: AnalyticsSettings) -> EconomicParameters:
    """The parameters of ``analytics.economics`` over the seed's; an unknown or bad one names the key."""
    try:
        return EconomicParameters(**settings.economics)  # type: ignore[arg-type]
    except ValidationError as e:
        problems = "; ".join(
            f"analytics.economics.{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(problems) from e


def first_level(category: str) -> str:
    return category.split(" > ", 1)[0].strip() or NO_CATEGORY


def channel_of(source: str) -> str:
    return CHANNELS.get(source, source)


def classify(f: SuggestionFacts, *, now: float, deflection_days: int) -> str | None:
    """What a confirmed suggestion became: deflected, awaiting, reopened, agent_involved (None: not confirmed)."""
    if f.decisive != "confirmed" or f.decisive_at is None:
        return None
    if f.decisive_reason == "agent_involved":
        return "agent_involved"
    window = deflection_days * DAY_S
    if f.reopened_at is not None and f.reopened_at - f.decisive_at <= window:
        return "reopened"
    if now - f.decisive_at < window:
        return "awaiting"
    return "deflected"


@dataclass(slots=True)
class _Counts:
    """A funnel while it is counted (a plain object: a year of suggestions is counted in a second)."""

    name: str
    seen: int = 0
    answered: int = 0
    shown: int = 0
    shadow: int = 0
    held_out: int = 0
    abstained: int = 0
    incident: int = 0
    confirmed: int = 0
    agent_involved: int = 0
    deflected: int = 0
    awaiting: int = 0
    reopened: int = 0
    rejected: int = 0
    no_answer: int = 0
    handed_off: int = 0
    timed_out: int = 0

    def funnel(self) -> Funnel:
        return Funnel(**{k: getattr(self, k) for k in self.__slots__})


def _add(funnel: _Counts, f: SuggestionFacts, confirmed_as: str | None) -> None:
    funnel.seen += 1
    if f.mode == "abstain":
        funnel.abstained += 1
    elif f.mode == "incident":
        funnel.incident += 1
    else:
        funnel.answered += 1
        if f.mode == "public":
            funnel.shown += 1
        elif f.mode == "shadow":
            funnel.shadow += 1
        elif f.mode == "holdout":
            funnel.held_out += 1
    if confirmed_as is not None:
        funnel.confirmed += 1
        setattr(funnel, confirmed_as, getattr(funnel, confirmed_as) + 1)
    elif f.decisive == "rejected":
        funnel.rejected += 1
    elif f.mode == "public" and not f.timed_out:
        funnel.no_answer += 1
    funnel.handed_off += f.handed_off
    funnel.timed_out += f.timed_out


def _day(ts: float) -> date:
    return datetime.fromtimestamp(ts, UTC).date()


def _week(ts: float) -> str:
    year, week, _ = _day(ts).isocalendar()
    return f"{year}-W{week:02d}"


def _funnels(groups: dict[str, _Counts], order: Iterable[str] | None = None) -> list[Funnel]:
    if order is not None:
        return [groups[k].funnel() for k in order]
    return [g.funnel() for g in sorted(groups.values(), key=lambda g: (-g.seen, g.name))]


def threshold_for_target(points: Sequence[tuple[float, bool]], target: float) -> tuple[float | None, int, int]:
    """The lowest confidence ``t`` among ``points`` (confidence, confirmed) at which the points with
    confidence ≥ ``t`` reach ``target`` precision, with their confirmed and rejected counts."""
    ordered = sorted(points, key=lambda p: -p[0])
    best: tuple[float | None, int, int] = (None, 0, 0)
    confirmed = rejected = 0
    i = 0
    while i < len(ordered):
        t = ordered[i][0]
        while i < len(ordered) and ordered[i][0] == t:
            confirmed += ordered[i][1]
            rejected += not ordered[i][1]
            i += 1
        if confirmed / (confirmed + rejected) >= target - 1e-12:
            best = (t, confirmed, rejected)
    return best


def _resolution_hours(f: SuggestionFacts) -> float | None:
    ends = [t for t in (f.decisive_at if f.decisive == "confirmed" else None, f.closed_at) if t is not None]
    return (min(ends) - f.created_at) / 3600 if ends else None


def _group(facts: Sequence[SuggestionFacts]) -> GroupOutcomes:
    return GroupOutcomes(
        resolution_hours=[h for f in facts if (h := _resolution_hours(f)) is not None],
        agent_replies=[float(f.agent_replies) for f in facts],
        reopened=[f.reopened_at is not None for f in facts],
    )


def gaps(
    store: Analytics, since: float, until: float, settings: AnalyticsSettings, embed: Embed | None,
    agent_minutes: float,
) -> tuple[list[Gap], str | None]:
    if embed is None:
        return [], "no embedding model given"
    texts = [t for t in store.gap_texts(since, until, limit=settings.gap_max_requests) if t.text]
    if not texts:
        return [], "no request was abstained on or rejected in this period"
    items = [Item(id=t.id, text=t.text, categories=(first_level(t.category),)) for t in texts]
    vectors = np.asarray(embed([t.text[:1000] for t in texts]), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = (vectors / np.where(norms == 0, 1.0, norms)).astype(np.float32)
    clusters = cluster(items, vectors, similarity=settings.gap_similarity, min_size=settings.gap_min_size)
    out = [
        Gap(size=c.size, example=c.representative[:500], categories=[(k, v) for k, v in c.categories],
            agent_hours=round(c.size * agent_minutes / 60, 2), member_ids=list(c.members))
        for c in clusters[:MAX_GAPS]
    ]
    note = None if out else f"no {settings.gap_min_size} similar unanswered requests"
    return out, note


def build_report(
    store: Analytics,
    settings: AnalyticsSettings,
    *,
    since: datetime,
    until: datetime,
    now: datetime | None = None,
    embed: Embed | None = None,
    parameters: EconomicParameters | None = None,
    target_precision: float | None = None,
    seed: int = 0,
) -> Report:
    """The report for the suggestions made in ``[since, until)``, as of ``now`` (default: the present)."""
    if until <= since:
        raise ValueError(f"'to' ({until:%Y-%m-%d}) must come after 'from' ({since:%Y-%m-%d})")
    now = now or datetime.now(UTC)
    now_s, since_s, until_s = now.timestamp(), since.timestamp(), until.timestamp()
    days = settings.deflection_days
    target = settings.target_precision if target_precision is None else target_precision
    p = parameters or economic_parameters(settings)
    facts = store.facts(since_s, until_s)

    total = _Counts(name="all")
    channels: dict[str, _Counts] = {}
    categories: dict[str, _Counts] = {}
    by_day: dict[str, _Counts] = {}
    by_week: dict[str, _Counts] = {}
    entries: dict[str, EntryStats] = {}
    points: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    thresholds: dict[str, tuple[float, float]] = {}
    for f in facts:
        as_ = classify(f, now=now_s, deflection_days=days)
        cat = first_level(f.category)
        day = _day(f.created_at).isoformat()
        week = _week(f.created_at)
        for group, key in ((channels, channel_of(f.source)), (categories, cat), (by_day, day), (by_week, week)):
            if key not in group:
                group[key] = _Counts(name=key)
            _add(group[key], f, as_)
        _add(total, f, as_)
        if f.mode == "public":
            if f.created_at >= thresholds.get(cat, (-math.inf, 0.0))[0]:
                thresholds[cat] = (f.created_at, f.threshold)
            if f.answer_id:
                e = entries.setdefault(f.answer_id, EntryStats(answer_id=f.answer_id, title=f.answer_title))
                e.suggested += 1
                e.confirmed += f.decisive == "confirmed"
                e.rejected += f.decisive == "rejected"
                e.deflected += as_ == "deflected"
            if f.decisive in ("confirmed", "rejected"):
                points[cat].append((f.confidence, f.decisive == "confirmed"))

    # Every day and week of the period, also the quiet ones: a chart with holes hides them.
    first, last = _day(since_s), _day(max(until_s - 1, since_s))
    day_keys: list[str] = []
    week_keys: list[str] = []
    d = first
    while d <= last and len(day_keys) < 3700:
        key = d.isoformat()
        day_keys.append(key)
        by_day.setdefault(key, _Counts(name=key))
        wk = _week(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())
        if wk not in week_keys:
            week_keys.append(wk)
            by_week.setdefault(wk, _Counts(name=wk))
        d += timedelta(days=1)

    working = sorted((e for e in entries.values() if e.confirmed and (e.confirmation_rate or 0) >= 0.5),
                     key=lambda e: (-e.confirmed, e.rejected, e.title))
    rejected = sorted((e for e in entries.values() if e.rejected and (e.confirmation_rate or 0) < 0.5),
                      key=lambda e: (-e.rejected, e.confirmed, e.title))
    precision = []
    for cat, pts in sorted(points.items()):
        t, kc, kr = threshold_for_target(pts, target)
        conf = sum(ok for _, ok in pts)
        precision.append(CategoryPrecision(
            category=cat, threshold=thresholds.get(cat, (0.0, 0.0))[1], confirmed=conf, rejected=len(pts) - conf,
            precision=conf / len(pts), target=target, threshold_for_target=t, kept_confirmed=kc, kept_rejected=kr,
        ))

    holdout = None
    held = [f for f in facts if f.mode == "holdout"]
    if held:
        # 2,000 resamples: the median's 95% interval to two digits, in bounded time on a year of tickets.
        holdout = compare_groups(_group([f for f in facts if f.mode == "public"]), _group(held), seed=seed,
                                 resamples=2000)

    found, note = gaps(store, since_s, until_s, settings, embed, p.agent_minutes_per_ticket)
    months = (until_s - since_s) / (30.4375 * DAY_S)
    money = measured_savings(p, tickets=total.seen, deflected=total.deflected, months=months)
    return Report(
        since=since, until=until, generated_at=now, deflection_days=days, target_precision=target,
        total=total.funnel(),
        by_channel=_funnels(channels), by_category=_funnels(categories), by_day=_funnels(by_day, day_keys),
        by_week=_funnels(by_week, week_keys), entries_working=working[:50], entries_rejected=rejected[:50],
        precision=precision, gaps=found, gaps_note=note, gaps_computed=embed is not None, holdout=holdout,
        parameters=p, savings=money, months=months,
    )


def parse_day(value: str, name: str) -> date:
    """``YYYY-MM-DD``, or a ValueError naming the field."""
    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{name}: expected a date like 2026-01-31, got {value[:40]!r}") from None
    if not 2000 <= day.year <= 2100:
        raise ValueError(f"{name}: expected a date between 2000 and 2100, got {value[:40]!r}")
    return day


def period(start: str | None, end: str | None, *, now: datetime | None = None) -> tuple[datetime, datetime]:
    """``[from, to + 1 day)`` in UTC; without ``from``, the 30 days up to ``to`` (default: today)."""
    today = (now or datetime.now(UTC)).date()
    given = parse_day(start, "from") if start else None
    last = parse_day(end, "to") if end else today
    first = given if given is not None else last - timedelta(days=29)
    if last < first:
        raise ValueError(f"to: {last} comes before from: {first}")
    if (last - first).days > 3660:
        raise ValueError("from/to: at most ten years at once")
    since = datetime(first.year, first.month, first.day, tzinfo=UTC)
    until = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    return since, until
