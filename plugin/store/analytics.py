"""The analytics queries: one row of facts per suggestion, folded from its outcome history.

Every number of the report (``plugin.service.analytics``) is computed from these facts, and the facts
from the append-only ``outcome_events``: the first decisive event (confirmed / rejected), the first
reopen, whether the suggestion timed out or was handed off, when an agent closed the ticket, how many
agent replies it saw. Nothing reads a single "outcome" column.
"""

from __future__ import annotations

from dataclasses import dataclass

from plugin.store.db import Database

_FACTS = """
SELECT s.id, s.source, s.category, s.mode, s.created_at, s.confidence, s.threshold,
       COALESCE(json_extract(s.entries, '$[0].answer_id'), '') AS answer_id,
       COALESCE(json_extract(s.entries, '$[0].title'), '') AS answer_title,
       d.kind AS decisive, d.at AS decisive_at, d.reason AS decisive_reason,
       MIN(CASE WHEN e.kind = 'reopened' THEN e.at END) AS reopened_at,
       MAX(e.kind = 'timed_out') AS timed_out,
       MAX(e.kind = 'handed_off') AS handed_off,
       MIN(CASE WHEN e.kind = 'closed_by_agent' THEN e.at END) AS closed_at,
       COALESCE(SUM(e.kind = 'agent_replied'), 0) AS agent_replies
FROM suggestions s
LEFT JOIN decisive_outcomes d ON d.suggestion_id = s.id
LEFT JOIN outcome_events e ON e.suggestion_id = s.id
WHERE s.created_at >= ? AND s.created_at < ?
GROUP BY s.id
ORDER BY s.created_at, s.id
"""

_GAP_TEXTS = """
SELECT s.id, s.query, s.ticket_title, s.category FROM suggestions s
LEFT JOIN decisive_outcomes d ON d.suggestion_id = s.id
WHERE s.created_at >= ? AND s.created_at < ? AND (s.mode = 'abstain' OR d.kind = 'rejected')
ORDER BY s.created_at DESC, s.id LIMIT ?
"""


@dataclass(frozen=True, slots=True)
class SuggestionFacts:
    """What the history of one suggestion says, for counting."""

    id: str
    source: str
    category: str
    mode: str
    created_at: float
    confidence: float
    threshold: float
    answer_id: str
    answer_title: str
    #: 'confirmed', 'rejected' or None (unanswered), with its time and reason.
    decisive: str | None
    decisive_at: float | None
    decisive_reason: str | None
    reopened_at: float | None
    timed_out: bool
    handed_off: bool
    closed_at: float | None
    agent_replies: int


@dataclass(frozen=True, slots=True)
class GapText:
    id: str
    text: str
    category: str


class Analytics:
    def __init__(self, db: Database):
        self.db = db

    def facts(self, since: float, until: float) -> list[SuggestionFacts]:
        """The suggestions made in ``[since, until)`` (seconds), oldest first, each with its history folded."""
        rows = self.db.read().execute(_FACTS, (since, until)).fetchall()
        return [
            SuggestionFacts(
                id=r["id"], source=r["source"], category=r["category"], mode=r["mode"], created_at=r["created_at"],
                confidence=r["confidence"], threshold=r["threshold"], answer_id=r["answer_id"],
                answer_title=r["answer_title"], decisive=r["decisive"], decisive_at=r["decisive_at"],
                decisive_reason=r["decisive_reason"], reopened_at=r["reopened_at"], timed_out=bool(r["timed_out"]),
                handed_off=bool(r["handed_off"]), closed_at=r["closed_at"], agent_replies=int(r["agent_replies"]),
            )
            for r in rows
        ]

    def gap_texts(self, since: float, until: float, *, limit: int) -> list[GapText]:
        """The latest ``limit`` requests of ``[since, until)`` the assistant abstained on or that were rejected."""
        rows = self.db.read().execute(_GAP_TEXTS, (since, until, limit)).fetchall()
        return [GapText(id=r["id"], text=(r["query"] or r["ticket_title"] or "").strip(), category=r["category"])
                for r in rows]
