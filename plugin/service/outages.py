"""Outage detection (issue 13): when near-identical requests arrive in a burst across channels, open an
incident; later requests of it get the incident's message instead of a knowledge-base answer until an
admin closes it (``helpdesk-assist incident close``).

The grouping is :class:`rag.clusters.BurstDetector` (in memory, over the last window of requests) on
:class:`rag.clusters.CharMix` vectors (the sentence encoder plus character n-grams weighed over the
knowledge base's questions), as measured in bench/bench_outages.py. What it decides is kept in the store
(:mod:`plugin.store.incidents`): an open incident is reloaded after a restart, and one closed from the
CLI stops taking requests at the next one.

The texts shown to users and agents come from the ru/en catalogs; the admin may set an incident's own
message (``incident message ID TEXT``).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from plugin.i18n import words
from plugin.settings import OutageSettings
from plugin.store import Store
from plugin.store.incidents import IncidentRow, Member
from rag.clusters import BurstConfig, BurstDetector, Incident, Request
from rag.privacy import mask_pii
from rag.text import clean_query

log = logging.getLogger(__name__)

Featurize = Callable[[Sequence[str]], np.ndarray]
#: How much of the first request's text describes the problem in the default message (masked).
_PROBLEM_CHARS = 120


@dataclass(frozen=True)
class Observation:
    """What the watch made of one request."""

    request_id: str
    #: The incident the request belongs to (None: an ordinary request).
    incident_id: str | None = None
    #: This request opened the incident (it gets an ordinary answer; the agents get the linking note).
    opened: bool = False

    @property
    def known_problem(self) -> bool:
        """The request joined an incident opened before it: it gets the incident's message."""
        return self.incident_id is not None and not self.opened


@dataclass(frozen=True)
class Banner:
    incident_id: str
    text: str
    opened_at: datetime
    size: int


def request_id(source: str, ticket_id: str) -> str:
    return f"{source}#{ticket_id}"


def problem(row: IncidentRow) -> str:
    """The problem as the first request put it, personal data masked, cut short."""
    text = " ".join(mask_pii(clean_query(row.representative) or row.representative).split())
    return text if len(text) <= _PROBLEM_CHARS else text[: _PROBLEM_CHARS - 1] + "…"


def user_message(row: IncidentRow, language: str) -> str:
    """What a user is told: the admin's message, else the default wording."""
    if row.message:
        return row.message
    _ = words(language)
    return _("Known problem: \u00ab{problem}\u00bb. We know about it and are working on it; your request is "
             "registered and an agent will follow up.").format(problem=problem(row))


class OutageWatch:
    """The burst detector over the requests of this process, backed by the store's incidents."""

    def __init__(self, store: Store, settings: OutageSettings, featurize: Callable[[], Featurize],
                 *, clock: Callable[[], float]):
        self.store = store
        self.config = BurstConfig(min_requests=settings.min_requests, window_s=settings.window_s,
                                  similarity=settings.similarity, join_similarity=settings.join_similarity)
        self._make_featurize = featurize
        self._featurize: Featurize | None = None
        self._detector: BurstDetector | None = None
        self.clock = clock
        self._lock = threading.Lock()
        #: Requests of the last windows (the detector keeps only ids): their source, ticket, text.
        self._recent: dict[str, Member] = {}

    # -- the detector ----------------------------------------------------------------------------------
    def _ready(self) -> BurstDetector:
        if self._detector is None:
            self._featurize = self._make_featurize()
            self._detector = BurstDetector(self._featurize, self.config)
            for row in self.store.incidents.find(status="open", limit=1000):
                self._reload(self._detector, row)
        return self._detector

    def _reload(self, detector: BurstDetector, row: IncidentRow) -> None:
        members = self.store.incidents.members(row.id)
        if not members or self._featurize is None:
            return
        vectors = np.asarray(self._featurize([m.text for m in members]), dtype=np.float32)
        detector.incidents[row.id] = Incident(
            id=row.id, opened_at=datetime.fromtimestamp(row.opened_at, UTC),
            last_at=datetime.fromtimestamp(row.last_at, UTC), representative=row.representative,
            members=[m.request_id for m in members], channels=Counter(m.channel for m in members),
            _sum=vectors.sum(axis=0),
        )

    def _sync(self, detector: BurstDetector) -> None:
        """Incidents closed elsewhere (the CLI, another process) take no more requests here."""
        open_ids = self.store.incidents.open_ids()
        for incident in detector.open_incidents():
            if incident.id not in open_ids:
                detector.close(incident.id)

    def observe(self, *, source: str, ticket_id: str, text: str, channel: str | None = None) -> Observation:
        """Feed one request (in arrival order: its time is now) and record what it did to the incidents."""
        rid = request_id(source, ticket_id)
        known = self.store.incidents.incident_of(rid)
        if known is not None:  # the same ticket seen again (a retry): same answer, nothing added
            row = self.store.incidents.get(known)
            return Observation(rid, known if row is not None and row.status == "open" else None)
        now = self.clock()
        member = Member(request_id=rid, source=source, ticket_id=ticket_id, channel=channel or source, text=text,
                        at=now)
        with self._lock:
            detector = self._ready()
            self._sync(detector)
            a = detector.add(Request(id=rid, time=datetime.fromtimestamp(now, UTC), text=text,
                                     channel=member.channel))
            self._recent[rid] = member
            horizon = now - 2 * self.config.window_s
            for key in [k for k, m in self._recent.items() if m.at < horizon]:
                del self._recent[key]
            if a.incident_id is None:
                return Observation(rid)
            if a.opened:
                members = [self._recent[r] for r in (*a.pulled_in, rid) if r in self._recent]
                incident = detector.incidents[a.incident_id]
                self.store.incidents.open_incident(
                    a.incident_id, opened_at=incident.opened_at.timestamp(), representative=incident.representative,
                    members=members,
                )
                log.warning("incident_recorded: %s (%d requests)", a.incident_id, len(members))
                return Observation(rid, a.incident_id, opened=True)
            self.store.incidents.add_member(a.incident_id, member)
            return Observation(rid, a.incident_id)

    # -- what people see -----------------------------------------------------------------------------
    def banners(self, language: str) -> list[Banner]:
        """One banner per open incident, newest first (the admin console and the chat show them)."""
        return banners(self.store, language)

    def message(self, incident_id: str, language: str) -> str:
        row = self.store.incidents.get(incident_id)
        return user_message(row, language) if row is not None else ""

    def close(self, incident_id: str, *, by: str) -> bool:
        closed = close(self.store, incident_id, by=by)
        with self._lock:
            if self._detector is not None and incident_id in self._detector.incidents:
                self._detector.close(incident_id)
        return closed


def banners(store: Store, language: str) -> list[Banner]:
    return [
        Banner(incident_id=row.id, text=user_message(row, language),
               opened_at=datetime.fromtimestamp(row.opened_at, UTC), size=row.size)
        for row in store.incidents.find(status="open")
    ]


def close(store: Store, incident_id: str, *, by: str) -> bool:
    closed = store.incidents.close(incident_id, by=by)
    if closed:
        log.info("incident_closed: %s by %s", incident_id, by)
    return closed


def agents_note(row: IncidentRow, members: Sequence[Member], language: str) -> tuple[str, list[str]]:
    """(heading, lines) of the one note the agents get when an incident opens: every ticket linked."""
    _ = words(language)
    heading = _("helpdesk-assist: possible outage, {n} similar requests within {minutes} minutes").format(
        n=len(members), minutes=max(1, round((members[-1].at - members[0].at) / 60)) if members else 0)
    lines = [_("Incident {id}: \u00ab{problem}\u00bb").format(id=row.id, problem=problem(row))]
    lines += [f"{m.source} #{m.ticket_id} ({m.channel})" for m in members]
    lines.append(_("Later requests like these get the known-problem message instead of an answer until an admin "
                   "closes the incident: helpdesk-assist incident close {id}").format(id=row.id))
    return heading, lines
