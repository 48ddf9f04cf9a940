"""Chat conversations and their turns (the self-service chat, issue 10).

A conversation belongs to one ``owner`` (an opaque identity string chosen by the service: a signed
cookie's id, a trusted login); every read here takes the owner and finds nothing for another one, so
that no caller can forget the check. Ids are ``secrets.token_urlsafe(16)`` (128 bits): unguessable.

A turn is one message of the person and our reply: ``answer`` (text and sources), ``clarify`` (a
question with options), or ``handoff`` ("an agent will help"). The hand-off's state and the ticket it
opened live on the conversation.
"""

from __future__ import annotations

import json
import secrets
from typing import Any, Literal

from pydantic import BaseModel, Field

from plugin.store.db import Database

Reply = Literal["answer", "clarify", "handoff", "incident"]
HandoffState = Literal["", "pending", "created", "failed"]


class Source(BaseModel):
    """A knowledge-base entry as the person sees it: its title and answer, never its question (in a
    knowledge base imported from tickets that is another employee's text)."""

    title: str
    answer: str


class Turn(BaseModel):
    conversation_id: str
    n: int
    at: float
    message: str
    #: What was searched (the message, the context + message, an LLM rewrite).
    query: str = ""
    kind: str = "new"
    method: str = "alone"
    reply: Reply
    answer_text: str = ""
    answer_mode: str = ""
    sources: list[Source] = Field(default_factory=list)
    answer_ids: list[str] = Field(default_factory=list)
    entry_ids: list[str] = Field(default_factory=list)
    #: The clarifying question (``rag.clarify.Clarification`` as a dict) when ``reply == "clarify"``.
    clarification: dict[str, Any] | None = None
    #: The suggestion (source "chat") an answer was recorded as: ratings are its outcome.
    suggestion_id: str | None = None
    #: The person said this answer did not help (a "not helpful" rating or a "не помогло" after it).
    rejected: bool = False


class Conversation(BaseModel):
    id: str
    owner: str
    created_at: float
    updated_at: float
    language: str = "ru"
    #: The first question (shortened), shown in the list of conversations.
    title: str = ""
    clarify_rounds: int = 0
    handoff_state: HandoffState = ""
    handoff_at: float | None = None
    handoff_error: str = ""
    ticket_source: str = ""
    ticket_id: str = ""
    ticket_url: str = ""
    turns: list[Turn] = Field(default_factory=list)


def new_conversation_id() -> str:
    return secrets.token_urlsafe(16)


_JSON_LISTS = ("sources", "answer_ids", "entry_ids")


class ChatStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, owner: str, *, language: str, title: str) -> Conversation:
        now = self.db.clock()
        conv_id = new_conversation_id()
        with self.db.transaction() as db:
            db.execute(
                "INSERT INTO chat_conversations (id, owner, created_at, updated_at, language, title)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (conv_id, owner, now, now, language, title[:200]),
            )
        conv = self.get(owner, conv_id)
        assert conv is not None
        return conv

    def get(self, owner: str, conv_id: str) -> Conversation | None:
        """The conversation with its turns, or None when there is none *for this owner*."""
        read = self.db.read()
        row = read.execute(
            "SELECT * FROM chat_conversations WHERE id = ? AND owner = ?", (conv_id, owner)
        ).fetchone()
        if row is None:
            return None
        turns = read.execute(
            "SELECT * FROM chat_turns WHERE conversation_id = ? ORDER BY n", (conv_id,)
        ).fetchall()
        return Conversation(**dict(row), turns=[_turn(t) for t in turns])

    def get_any(self, conv_id: str) -> Conversation | None:
        """The conversation whatever its owner: for the worker (the hand-off), never for a request."""
        row = self.db.read().execute("SELECT owner FROM chat_conversations WHERE id = ?", (conv_id,)).fetchone()
        return self.get(row["owner"], conv_id) if row else None

    def list(self, owner: str, *, limit: int = 20) -> list[dict[str, Any]]:
        """The owner's conversations, newest first: id, title, times, turns, the last reply, whether an
        answer was rated helpful, and the hand-off."""
        rows = self.db.read().execute(
            "SELECT c.id, c.title, c.created_at, c.updated_at, c.handoff_state, c.ticket_id, c.language,"
            " (SELECT COUNT(*) FROM chat_turns t WHERE t.conversation_id = c.id) AS turns,"
            " (SELECT reply FROM chat_turns t WHERE t.conversation_id = c.id ORDER BY n DESC LIMIT 1) AS last_reply"
            " FROM chat_conversations c WHERE c.owner = ? ORDER BY c.updated_at DESC, c.created_at DESC LIMIT ?",
            (owner, limit),
        ).fetchall()
        return [dict(r) for r in rows]

    def count_turns(self, conv_id: str) -> int:
        row = self.db.read().execute(
            "SELECT COUNT(*) AS n FROM chat_turns WHERE conversation_id = ?", (conv_id,)
        ).fetchone()
        return int(row["n"])

    def add_turn(self, turn: Turn, *, clarify_rounds: int | None = None) -> Turn:
        """Append ``turn`` (its ``n`` is the next number, whatever it says) and touch the conversation."""
        data = turn.model_dump()
        for key in _JSON_LISTS:
            data[key] = json.dumps(data[key], ensure_ascii=False)
        data["clarification"] = json.dumps(turn.clarification, ensure_ascii=False) if turn.clarification else None
        data["rejected"] = int(turn.rejected)
        with self.db.transaction() as db:
            row = db.execute(
                "SELECT COALESCE(MAX(n), 0) + 1 AS n FROM chat_turns WHERE conversation_id = ?",
                (turn.conversation_id,),
            ).fetchone()
            data["n"] = int(row["n"])
            columns = list(data)
            db.execute(
                f"INSERT INTO chat_turns ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",  # noqa: S608
                [data[c] for c in columns],
            )
            db.execute(
                "UPDATE chat_conversations SET updated_at = ?, clarify_rounds = COALESCE(?, clarify_rounds)"
                " WHERE id = ?",
                (turn.at, clarify_rounds, turn.conversation_id),
            )
        return turn.model_copy(update={"n": data["n"]})

    def update_answer(self, conv_id: str, n: int, *, text: str | None, mode: str) -> None:
        """The answer of turn ``n`` replaced (``text``; None keeps it) once the LLM has composed it."""
        with self.db.transaction() as db:
            db.execute(
                "UPDATE chat_turns SET answer_text = COALESCE(?, answer_text), answer_mode = ?"
                " WHERE conversation_id = ? AND n = ?", (text, mode[:300], conv_id, n))
            db.execute("UPDATE chat_conversations SET updated_at = ? WHERE id = ?", (self.db.clock(), conv_id))

    def mark_rejected(self, conv_id: str, n: int) -> None:
        with self.db.transaction() as db:
            db.execute("UPDATE chat_turns SET rejected = 1 WHERE conversation_id = ? AND n = ?", (conv_id, n))

    def set_handoff(
        self, conv_id: str, state: HandoffState, *, error: str = "", ticket_source: str = "", ticket_id: str = "",
        ticket_url: str = "",
    ) -> None:
        with self.db.transaction() as db:
            db.execute(
                "UPDATE chat_conversations SET handoff_state = ?, handoff_error = ?,"
                " handoff_at = COALESCE(handoff_at, ?), ticket_source = ?, ticket_id = ?, ticket_url = ?,"
                " updated_at = ? WHERE id = ?",
                (state, error[:500], self.db.clock(), ticket_source, ticket_id, ticket_url, self.db.clock(), conv_id),
            )

    def start_handoff(self, conv_id: str) -> bool:
        """Mark the hand-off pending unless one is pending or done already; True when it is new."""
        with self.db.transaction() as db:
            cur = db.execute(
                "UPDATE chat_conversations SET handoff_state = 'pending', handoff_error = '', handoff_at = ?,"
                " updated_at = ? WHERE id = ? AND handoff_state IN ('', 'failed')",
                (self.db.clock(), self.db.clock(), conv_id),
            )
            return cur.rowcount == 1


def _turn(row: Any) -> Turn:
    data = dict(row)
    for key in _JSON_LISTS:
        data[key] = json.loads(data[key] or "[]")
    data["clarification"] = json.loads(data["clarification"]) if data["clarification"] else None
    data["rejected"] = bool(data["rejected"])
    return Turn(**data)
