"""What the assistant suggested and everything that happened to it since.

One suggestion per (source, ticket): the row is the *intent*, written before anything is posted; each
comment we post carries the row's marker, so that a retry finds what an earlier attempt posted
(exactly-once in practice).

What happened to a suggestion is an append-only history, ``outcome_events``: ``suggested`` when it is
made; ``confirmed`` / ``rejected`` (with the reason and comment) when the requester answers through a
link, a mail reply, the helpdesk or the chat; ``reopened``, ``closed_by_agent``, ``agent_replied``,
``timed_out``, ``handed_off`` as the pipeline and the mail flow observe them; each with its time and
channel. Analytics count from these events. The *outcome* of a suggestion, as the pipeline and the
confirmation pages know it, is derived: the first ``confirmed`` or ``rejected`` event (the first
answer stands; a later click is answered "already recorded"). An event that can be observed more than
once (the same agent reply seen by two updates) carries a ``ref`` and is stored once.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

from plugin.store.db import Database

Outcome = Literal["solved", "not_solved"]
#: ``holdout``: the engine would have answered publicly, but the ticket was drawn into the holdout
#: (``analytics.holdout_share``): only the private note; its ``suggested`` event has reason "holdout".
#: ``incident``: the request joined an open outage incident and got its message instead of an answer
#: (``reason`` holds the incident's id).
Mode = Literal["public", "shadow", "abstain", "holdout", "incident"]
EventKind = Literal[
    "suggested", "confirmed", "rejected", "reopened", "closed_by_agent", "agent_replied", "timed_out", "handed_off"
]
EVENT_KINDS: tuple[EventKind, ...] = get_args(EventKind)
#: The events that answer a suggestion, and the outcome each stands for.
DECISIVE: dict[EventKind, Outcome] = {"confirmed": "solved", "rejected": "not_solved"}
EVENT_OF: dict[Outcome, EventKind] = {outcome: kind for kind, outcome in DECISIVE.items()}

#: A suggestion row with its outcome derived from the first decisive event.
_SELECT = """
SELECT s.*, d.kind AS d_kind, d.reason AS d_reason, d.comment AS d_comment, d.channel AS d_channel, d.at AS d_at
FROM suggestions s LEFT JOIN decisive_outcomes d ON d.suggestion_id = s.id
"""


class EntryRef(BaseModel):
    entry_id: str
    answer_id: str
    title: str = ""
    question: str = ""
    answer: str = ""
    score: float = 0.0
    confidence: float = 0.0
    origin: str = ""


class Suggestion(BaseModel):
    id: str
    source: str
    ticket_id: str
    created_at: float
    mode: Mode
    language: str
    ticket_title: str = ""
    query: str = ""
    category: str = ""
    category_confidence: float = 0.0
    confidence: float = 0.0
    threshold: float = 0.0
    reason: str = ""
    #: The reason as a code of rag.models.ABSTAIN_REASONS and its values ("" for suggestions made
    #: before codes were kept: ``reason`` is then all there is).
    reason_code: str = ""
    reason_params: dict[str, str] = Field(default_factory=dict)
    answer_text: str = ""
    answer_mode: str = ""
    entries: list[EntryRef] = Field(default_factory=list)
    requester_id: str = ""
    public_comment_id: str | None = None
    private_comment_id: str | None = None
    #: Derived from the history: the first confirmed / rejected event (None while unanswered).
    outcome: Outcome | None = None
    outcome_reason: str | None = None
    outcome_comment: str = ""
    outcome_via: str | None = None
    outcome_at: float | None = None
    #: When the worker applied the outcome in the helpdesk (closed, handed back, mail sent).
    outcome_applied_at: float | None = None

    def marker(self, purpose: Literal["public", "private", "outcome", "incident"]) -> str:
        """The marker carried by the comment posted for ``purpose`` (``ha-`` + 12 hex digits)."""
        if purpose == "public":
            return f"ha-{self.id}"
        digest = hashlib.sha256(f"{self.id}:{purpose}".encode()).hexdigest()[:12]
        return f"ha-{digest}"


class OutcomeEvent(BaseModel):
    id: int
    suggestion_id: str
    kind: EventKind
    at: float
    #: How it reached us: link, mail, helpdesk, chat, worker, or the source for "suggested".
    channel: str
    reason: str | None = None
    comment: str = ""
    #: What identifies an event observed more than once (a comment id, a time in the helpdesk).
    ref: str = ""


def new_suggestion_id() -> str:
    return secrets.token_hex(6)


#: Columns of the suggestions table written when a suggestion is made.
_COLUMNS = (
    "id", "source", "ticket_id", "created_at", "mode", "language", "ticket_title", "query", "category",
    "category_confidence", "confidence", "threshold", "reason", "reason_code", "reason_params", "answer_text",
    "answer_mode", "entries", "requester_id", "public_comment_id", "private_comment_id",
)


class Suggestions:
    def __init__(self, db: Database):
        self.db = db

    # -- suggestions ---------------------------------------------------------------------------------
    def get(self, suggestion_id: str) -> Suggestion | None:
        row = self.db.read().execute(_SELECT + " WHERE s.id = ?", (suggestion_id,)).fetchone()
        return _suggestion(row) if row else None

    def for_ticket(self, source: str, ticket_id: str) -> Suggestion | None:
        row = self.db.read().execute(
            _SELECT + " WHERE s.source = ? AND s.ticket_id = ?", (source, ticket_id)
        ).fetchone()
        return _suggestion(row) if row else None

    def create(self, s: Suggestion) -> Suggestion:
        """Record the intent and its ``suggested`` event. When another worker recorded one for this
        ticket first, that one wins (and nothing else is written)."""
        data = s.model_dump()
        data["entries"] = json.dumps([e.model_dump() for e in s.entries], ensure_ascii=False)
        data["reason_params"] = json.dumps(s.reason_params, ensure_ascii=False)
        with self.db.transaction() as db:
            cur = db.execute(
                f"INSERT OR IGNORE INTO suggestions ({', '.join(_COLUMNS)}) "  # noqa: S608 - fixed column names
                f"VALUES ({', '.join('?' for _ in _COLUMNS)})",
                [data[c] for c in _COLUMNS],
            )
            if cur.rowcount == 1:
                db.execute(
                    "INSERT INTO outcome_events (suggestion_id, kind, at, channel, reason)"
                    " VALUES (?, 'suggested', ?, ?, ?)",
                    (s.id, s.created_at, s.source, "holdout" if s.mode == "holdout" else None),
                )
        existing = self.for_ticket(s.source, s.ticket_id)
        assert existing is not None
        return existing

    def set_comment(self, suggestion_id: str, which: Literal["public", "private"], comment_id: str) -> None:
        column = "public_comment_id" if which == "public" else "private_comment_id"
        with self.db.transaction() as db:
            db.execute(f"UPDATE suggestions SET {column} = ? WHERE id = ?", (comment_id, suggestion_id))  # noqa: S608

    # -- the history -----------------------------------------------------------------------------------
    def record_outcome(
        self,
        suggestion_id: str,
        outcome: Outcome,
        *,
        via: str,
        reason: str | None = None,
        comment: str = "",
        client: dict[str, str] | None = None,
    ) -> tuple[Suggestion, bool]:
        """Append the ``confirmed`` / ``rejected`` event unless the suggestion is answered already.
        Returns (the suggestion, first_time): the first answer stands."""
        with self.db.transaction() as db:
            known = db.execute("SELECT 1 FROM suggestions WHERE id = ?", (suggestion_id,)).fetchone()
            if known is None:
                raise KeyError(suggestion_id)
            answered = db.execute(
                "SELECT 1 FROM decisive_outcomes WHERE suggestion_id = ?", (suggestion_id,)
            ).fetchone()
            if answered is None:
                db.execute(
                    "INSERT INTO outcome_events (suggestion_id, kind, at, channel, reason, comment, client)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (suggestion_id, EVENT_OF[outcome], self.db.clock(), via, reason, comment[:2000],
                     json.dumps(client or {})),
                )
        s = self.get(suggestion_id)
        assert s is not None
        return s, answered is None

    def add_event(
        self,
        suggestion_id: str,
        kind: EventKind,
        *,
        channel: str,
        reason: str | None = None,
        comment: str = "",
        ref: str = "",
        at: float | None = None,
    ) -> bool:
        """Append an event that is not an answer (``reopened``, ``closed_by_agent``, ``agent_replied``,
        ``timed_out``, ``handed_off``); True when it is new (the same kind and ``ref`` is stored once)."""
        if kind in DECISIVE or kind == "suggested":
            raise ValueError(f"{kind!r} events are written by create() and record_outcome()")
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {kind!r}; expected one of {', '.join(EVENT_KINDS)}")
        with self.db.transaction() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO outcome_events (suggestion_id, kind, at, channel, reason, comment, ref)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (suggestion_id, kind, self.db.clock() if at is None else at, channel, reason, comment[:2000], ref),
            )
            return cur.rowcount == 1

    def events(self, suggestion_id: str) -> list[OutcomeEvent]:
        """The history of one suggestion, oldest first."""
        rows = self.db.read().execute(
            "SELECT id, suggestion_id, kind, at, channel, reason, comment, ref FROM outcome_events"
            " WHERE suggestion_id = ? ORDER BY id",
            (suggestion_id,),
        ).fetchall()
        return [OutcomeEvent(**dict(r)) for r in rows]

    def mark_applied(self, suggestion_id: str) -> None:
        with self.db.transaction() as db:
            db.execute("UPDATE suggestions SET outcome_applied_at = ? WHERE id = ?", (self.db.clock(), suggestion_id))

    def similar_confirmed(self, answer_id: str, *, exclude: str, limit: int = 3) -> list[Suggestion]:
        """Past tickets whose requester confirmed a suggestion led by the same answer."""
        rows = self.db.read().execute(
            _SELECT + " WHERE d.kind = 'confirmed' AND s.id != ?"
            " AND json_extract(s.entries, '$[0].answer_id') = ? ORDER BY d.at DESC LIMIT ?",
            (exclude, answer_id, limit),
        ).fetchall()
        return [_suggestion(r) for r in rows]

    # -- the per-ticket log (what the pipeline decided, for the admin and for tests) -----------------
    def log(self, source: str, ticket_id: str, what: str, detail: str = "") -> None:
        with self.db.transaction() as db:
            db.execute(
                "INSERT INTO ticket_log (source, ticket_id, at, what, detail) VALUES (?, ?, ?, ?, ?)",
                (source, ticket_id, self.db.clock(), what, detail[:1000]),
            )

    def history(self, source: str, ticket_id: str) -> list[tuple[str, str]]:
        rows = self.db.read().execute(
            "SELECT what, detail FROM ticket_log WHERE source = ? AND ticket_id = ? ORDER BY at, rowid",
            (source, ticket_id),
        ).fetchall()
        return [(r["what"], r["detail"]) for r in rows]

    def counts(self) -> dict[str, Any]:
        rows = self.db.read().execute(
            "SELECT s.mode, COALESCE(d.kind, 'pending') AS o, COUNT(*) AS n FROM suggestions s"
            " LEFT JOIN decisive_outcomes d ON d.suggestion_id = s.id GROUP BY s.mode, o"
        ).fetchall()
        out: dict[str, Any] = {}
        for r in rows:
            outcome = DECISIVE.get(r["o"], r["o"])
            out.setdefault(r["mode"], {})[outcome] = r["n"]
        return out


    def search(self, text: str = "", *, source: str | None = None, limit: int = 100) -> list[Suggestion]:
        """The newest first; ``text`` found (case-insensitively) in the request, the title, the ticket id
        or the category."""
        sql = _SELECT + " WHERE (? IS NULL OR s.source = ?)"
        args: list[Any] = [source, source]
        if text:
            sql += (" AND (instr(casefold(s.query), casefold(?)) > 0"
                    " OR instr(casefold(s.ticket_title), casefold(?)) > 0"
                    " OR s.ticket_id = ? OR instr(casefold(s.category), casefold(?)) > 0)")
            args += [text, text, text, text]
        sql += " ORDER BY s.created_at DESC LIMIT ?"
        args.append(limit)
        return [_suggestion(r) for r in self.db.read().execute(sql, args).fetchall()]

    def entry_counts(self, entry_id: str) -> dict[str, int]:
        """How often an entry was suggested (among a suggestion's entries), and how often a suggestion
        it led was confirmed or rejected."""
        db = self.db.read()
        suggested = db.execute(
            "SELECT COUNT(*) FROM suggestions s WHERE EXISTS"
            " (SELECT 1 FROM json_each(s.entries) j WHERE json_extract(j.value, '$.entry_id') = ?)", (entry_id,)
        ).fetchone()[0]
        out = {"suggested": int(suggested), "confirmed": 0, "rejected": 0}
        for r in db.execute(
            "SELECT d.kind, COUNT(*) AS n FROM suggestions s JOIN decisive_outcomes d ON d.suggestion_id = s.id"
            " WHERE json_extract(s.entries, '$[0].entry_id') = ? GROUP BY d.kind", (entry_id,)
        ):
            out[r["kind"]] = int(r["n"])
        return out

    def most_rejected(self, limit: int = 20) -> list[tuple[str, str, int, int]]:
        """Entries that led rejected suggestions, most rejected first: (entry id, title, rejected, confirmed)."""
        rows = self.db.read().execute(
            "SELECT json_extract(s.entries, '$[0].entry_id') AS entry_id,"
            " MAX(json_extract(s.entries, '$[0].title')) AS title,"
            " SUM(d.kind = 'rejected') AS rejected, SUM(d.kind = 'confirmed') AS confirmed"
            " FROM suggestions s JOIN decisive_outcomes d ON d.suggestion_id = s.id"
            " WHERE entry_id IS NOT NULL GROUP BY entry_id HAVING rejected > 0"
            " ORDER BY rejected DESC, confirmed ASC LIMIT ?", (limit,)
        ).fetchall()
        return [(r["entry_id"], r["title"] or "", int(r["rejected"]), int(r["confirmed"])) for r in rows]

    def sources(self) -> list[str]:
        return [r[0] for r in self.db.read().execute("SELECT DISTINCT source FROM suggestions ORDER BY source")]

    def window_counts(self, since: float) -> dict[str, int]:
        """What happened since ``since``: tickets seen (suggestions made), answered publicly, kept to
        the agents (abstain or shadow), confirmed, rejected, handed off."""
        db = self.db.read()
        modes = dict(
            (r["mode"], r["n"]) for r in db.execute(
                "SELECT mode, COUNT(*) AS n FROM suggestions WHERE created_at >= ? GROUP BY mode", (since,)
            )
        )
        kinds = dict(
            (r["kind"], r["n"]) for r in db.execute(
                "SELECT kind, COUNT(*) AS n FROM outcome_events WHERE at >= ? GROUP BY kind", (since,)
            )
        )
        return {
            "seen": sum(modes.values()),
            "answered": modes.get("public", 0),
            "agents_only": modes.get("abstain", 0) + modes.get("shadow", 0),
            "confirmed": kinds.get("confirmed", 0),
            "rejected": kinds.get("rejected", 0),
            "handed_off": kinds.get("handed_off", 0),
        }


def _suggestion(row: Any) -> Suggestion:
    data = dict(row)
    data["entries"] = [EntryRef(**e) for e in json.loads(data.get("entries") or "[]")]
    data["reason_params"] = json.loads(data.get("reason_params") or "{}")
    kind = data.pop("d_kind")
    data["outcome"] = DECISIVE.get(kind) if kind else None
    data["outcome_reason"] = data.pop("d_reason")
    data["outcome_comment"] = data.pop("d_comment") or ""
    data["outcome_via"] = data.pop("d_channel")
    data["outcome_at"] = data.pop("d_at")
    return Suggestion(**data)
