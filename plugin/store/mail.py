"""Mail conversations: one row per message we were asked, with its raw bytes and where it stands.

States: ``new`` (stored, not answered yet) -> ``sending`` (the answer is going out: a retry that finds
this state must not send again) -> ``answered`` (waiting for the user until ``deadline``) ->
``closed`` (the user confirmed) or ``forwarded`` (passed on to the helpdesk). Times are the mail
flow's clock (its deadlines), passed in.
"""

from __future__ import annotations

from typing import Any, Literal

from plugin.store.db import Database

State = Literal["new", "sending", "answered", "closed", "forwarded"]


class MailConversations:
    def __init__(self, db: Database) -> None:
        self.db = db

    def insert(self, conv_id: str, *, message_id: str, from_addr: str, reply_addr: str, subject: str, language: str,
               raw: bytes, at: float) -> None:
        """Store a new conversation (a second insert of the same Message-ID changes nothing)."""
        with self.db.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO mail_conversations"
                " (id, message_id, from_addr, reply_addr, subject, language, raw, created_at, state)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'new')",
                (conv_id, message_id, from_addr, reply_addr, subject[:500], language, raw, at),
            )

    def get(self, conv_id: str) -> dict[str, Any] | None:
        row = self.db.read().execute("SELECT * FROM mail_conversations WHERE id = ?", (conv_id,)).fetchone()
        return dict(row) if row else None

    def by_message(self, message_id: str) -> dict[str, Any] | None:
        row = self.db.read().execute(
            "SELECT * FROM mail_conversations WHERE message_id = ?", (message_id,)
        ).fetchone()
        return dict(row) if row else None

    def start_sending(self, conv_id: str) -> State:
        """Move ``new`` to ``sending`` and return the state found before (in one transaction, so two
        workers never both see ``new``)."""
        with self.db.transaction() as db:
            state: State = db.execute(
                "SELECT state FROM mail_conversations WHERE id = ?", (conv_id,)
            ).fetchone()["state"]
            if state == "new":
                db.execute("UPDATE mail_conversations SET state = 'sending' WHERE id = ?", (conv_id,))
        return state

    def mark_answered(self, conv_id: str, *, reply_message_id: str, at: float, deadline: float) -> None:
        with self.db.transaction() as db:
            db.execute(
                "UPDATE mail_conversations SET state = 'answered', reply_message_id = ?, answered_at = ?, deadline = ?"
                " WHERE id = ?",
                (reply_message_id, at, deadline, conv_id),
            )

    def mark_closed(self, conv_id: str, *, at: float) -> None:
        with self.db.transaction() as db:
            db.execute("UPDATE mail_conversations SET state = 'closed', closed_at = ? WHERE id = ?", (at, conv_id))

    def mark_forwarded(self, conv_id: str, reason: str, *, at: float) -> None:
        with self.db.transaction() as db:
            db.execute(
                "UPDATE mail_conversations SET state = 'forwarded', forwarded_at = ?, forward_reason = ? WHERE id = ?",
                (at, reason[:500], conv_id),
            )

    def expired(self, now: float) -> list[str]:
        """Answered conversations whose deadline passed without a word from the user."""
        rows = self.db.read().execute(
            "SELECT id FROM mail_conversations WHERE state = 'answered' AND deadline < ?", (now,)
        ).fetchall()
        return [r["id"] for r in rows]

    def replies_since(self, recipient: str, since: float) -> int:
        """Answers written to ``recipient`` (lower-cased) since ``since``."""
        row = self.db.read().execute(
            "SELECT COUNT(*) AS n FROM mail_conversations WHERE reply_addr = ? AND answered_at > ?",
            (recipient, since),
        ).fetchone()
        return int(row["n"])

    def counts(self) -> dict[str, int]:
        rows = self.db.read().execute(
            "SELECT state, COUNT(*) AS n FROM mail_conversations GROUP BY state"
        ).fetchall()
        return {r["state"]: r["n"] for r in rows}
