"""What the pipeline remembers per ticket: the suggestion it made, what it posted, the outcome.

Tables live in the state store's SQLite file (registered with ``ensure_schema``). One suggestion per
(source, ticket): the row is the *intent*, written before anything is posted; each comment we post
carries the row's marker, so that a retry finds what an earlier attempt posted (exactly-once in
practice, design.md). The first outcome recorded stands; later ones are answered "already".
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, Field

from plugin.state import StateStore

Outcome = Literal["solved", "not_solved"]
Mode = Literal["public", "shadow", "abstain"]

_DDL = """
CREATE TABLE IF NOT EXISTS suggestions (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    ticket_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    mode TEXT NOT NULL,
    language TEXT NOT NULL,
    ticket_title TEXT NOT NULL DEFAULT '',
    query TEXT NOT NULL DEFAULT '',
    category TEXT NOT NULL DEFAULT '',
    category_confidence REAL NOT NULL DEFAULT 0,
    confidence REAL NOT NULL DEFAULT 0,
    threshold REAL NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    answer_text TEXT NOT NULL DEFAULT '',
    answer_mode TEXT NOT NULL DEFAULT '',
    entries TEXT NOT NULL DEFAULT '[]',
    requester_id TEXT NOT NULL DEFAULT '',
    public_comment_id TEXT,
    private_comment_id TEXT,
    outcome TEXT,
    outcome_reason TEXT,
    outcome_comment TEXT NOT NULL DEFAULT '',
    outcome_via TEXT,
    outcome_at REAL,
    outcome_client TEXT NOT NULL DEFAULT '{}',
    outcome_applied_at REAL,
    UNIQUE (source, ticket_id)
);
CREATE INDEX IF NOT EXISTS suggestions_outcome ON suggestions (outcome, outcome_at);
CREATE TABLE IF NOT EXISTS ticket_log (
    source TEXT NOT NULL,
    ticket_id TEXT NOT NULL,
    at REAL NOT NULL,
    what TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS ticket_log_ticket ON ticket_log (source, ticket_id, at);
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
    answer_text: str = ""
    answer_mode: str = ""
    entries: list[EntryRef] = Field(default_factory=list)
    requester_id: str = ""
    public_comment_id: str | None = None
    private_comment_id: str | None = None
    outcome: Outcome | None = None
    outcome_reason: str | None = None
    outcome_comment: str = ""
    outcome_via: str | None = None
    outcome_at: float | None = None
    outcome_applied_at: float | None = None

    def marker(self, purpose: Literal["public", "private", "outcome"]) -> str:
        """The marker carried by the comment posted for ``purpose`` (``ha-`` + 12 hex digits)."""
        if purpose == "public":
            return f"ha-{self.id}"
        digest = hashlib.sha256(f"{self.id}:{purpose}".encode()).hexdigest()[:12]
        return f"ha-{digest}"


def new_suggestion_id() -> str:
    return secrets.token_hex(6)


class Records:
    def __init__(self, store: StateStore, *, clock: Callable[[], float] = time.time):
        self.store = store
        self.clock = clock
        store.ensure_schema("records", 1, _DDL)

    # -- suggestions ---------------------------------------------------------------------------------
    def get(self, suggestion_id: str) -> Suggestion | None:
        db = self.store.read()
        row = db.execute("SELECT * FROM suggestions WHERE id = ?", (suggestion_id,)).fetchone()
        return _suggestion(row) if row else None

    def for_ticket(self, source: str, ticket_id: str) -> Suggestion | None:
        db = self.store.read()
        row = db.execute(
            "SELECT * FROM suggestions WHERE source = ? AND ticket_id = ?", (source, ticket_id)
        ).fetchone()
        return _suggestion(row) if row else None

    def create(self, s: Suggestion) -> Suggestion:
        """Record the intent. When another worker recorded one for this ticket first, that one wins."""
        data = s.model_dump()
        data["entries"] = json.dumps([e.model_dump() for e in s.entries], ensure_ascii=False)
        columns = [c for c in data if not c.startswith("outcome")]
        with self.store.transaction() as db:
            db.execute(
                f"INSERT OR IGNORE INTO suggestions ({', '.join(columns)}) "  # noqa: S608 - fixed column names
                f"VALUES ({', '.join('?' for _ in columns)})",
                [data[c] for c in columns],
            )
        existing = self.for_ticket(s.source, s.ticket_id)
        assert existing is not None
        return existing

    def set_comment(self, suggestion_id: str, which: Literal["public", "private"], comment_id: str) -> None:
        column = "public_comment_id" if which == "public" else "private_comment_id"
        with self.store.transaction() as db:
            db.execute(f"UPDATE suggestions SET {column} = ? WHERE id = ?", (comment_id, suggestion_id))  # noqa: S608

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
        """Record the outcome unless one stands already. Returns (the suggestion, first_time)."""
        with self.store.transaction() as db:
            cur = db.execute(
                """UPDATE suggestions SET outcome = ?, outcome_reason = ?, outcome_comment = ?, outcome_via = ?,
                       outcome_at = ?, outcome_client = ?
                   WHERE id = ? AND outcome IS NULL""",
                (outcome, reason, comment[:2000], via, self.clock(), json.dumps(client or {}), suggestion_id),
            )
            first = cur.rowcount == 1
        s = self.get(suggestion_id)
        if s is None:
            raise KeyError(suggestion_id)
        return s, first

    def mark_applied(self, suggestion_id: str) -> None:
        with self.store.transaction() as db:
            db.execute("UPDATE suggestions SET outcome_applied_at = ? WHERE id = ?", (self.clock(), suggestion_id))

    def similar_confirmed(self, answer_id: str, *, exclude: str, limit: int = 3) -> list[Suggestion]:
        """Past tickets whose requester confirmed a suggestion led by the same answer."""
        db = self.store.read()
        rows = db.execute(
            """SELECT * FROM suggestions WHERE outcome = 'solved' AND id != ?
               AND json_extract(entries, '$[0].answer_id') = ? ORDER BY outcome_at DESC LIMIT ?""",
            (exclude, answer_id, limit),
        ).fetchall()
        return [_suggestion(r) for r in rows]

    # -- the per-ticket log (what the pipeline decided, for the admin and for tests) -----------------
    def log(self, source: str, ticket_id: str, what: str, detail: str = "") -> None:
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO ticket_log (source, ticket_id, at, what, detail) VALUES (?, ?, ?, ?, ?)",
                (source, ticket_id, self.clock(), what, detail[:1000]),
            )

    def history(self, source: str, ticket_id: str) -> list[tuple[str, str]]:
        db = self.store.read()
        rows = db.execute(
            "SELECT what, detail FROM ticket_log WHERE source = ? AND ticket_id = ? ORDER BY at, rowid",
            (source, ticket_id),
        ).fetchall()
        return [(r["what"], r["detail"]) for r in rows]

    def counts(self) -> dict[str, Any]:
        db = self.store.read()
        rows = db.execute(
            "SELECT mode, COALESCE(outcome, 'pending') AS o, COUNT(*) AS n FROM suggestions GROUP BY mode, o"
        ).fetchall()
        out: dict[str, Any] = {}
        for r in rows:
            out.setdefault(r["mode"], {})[r["o"]] = r["n"]
        return out


def _suggestion(row: Any) -> Suggestion:
    data = dict(row)
    data["entries"] = [EntryRef(**e) for e in json.loads(data.get("entries") or "[]")]
    data.pop("outcome_client", None)
    return Suggestion(**data)
