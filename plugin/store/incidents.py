"""Outage incidents (issue 13): opened when near-identical requests arrive in a burst, closed by an admin.

The detection itself is in memory (``rag.clusters.BurstDetector``, over the last window of requests);
what it decided is kept here, so that an incident survives a restart, the CLI can list and close it,
and every process sees the same open incidents.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from plugin.store.db import Database


class Member(BaseModel):
    request_id: str
    source: str
    ticket_id: str
    channel: str
    text: str
    at: float


class IncidentRow(BaseModel):
    id: str
    opened_at: float
    last_at: float
    representative: str
    #: What users are told (set by an admin); empty: the default wording.
    message: str = ""
    status: str
    closed_at: float | None = None
    closed_by: str = ""
    note_posted_at: float | None = None
    size: int = 0


_SELECT = """
SELECT i.*, (SELECT COUNT(*) FROM incident_members m WHERE m.incident_id = i.id) AS size FROM incidents i
"""


class Incidents:
    def __init__(self, db: Database):
        self.db = db

    def open_incident(self, incident_id: str, *, opened_at: float, representative: str,
                      members: Sequence[Member]) -> bool:
        """Record a new incident with its first members; False when it is known already."""
        with self.db.transaction() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO incidents (id, opened_at, last_at, representative) VALUES (?, ?, ?, ?)",
                (incident_id, opened_at, max((m.at for m in members), default=opened_at), representative[:1000]),
            )
            for m in members:
                self._add(db, incident_id, m)
            return cur.rowcount == 1

    def add_member(self, incident_id: str, member: Member) -> None:
        with self.db.transaction() as db:
            self._add(db, incident_id, member)
            db.execute("UPDATE incidents SET last_at = MAX(last_at, ?) WHERE id = ?", (member.at, incident_id))

    @staticmethod
    def _add(db: object, incident_id: str, m: Member) -> None:
        db.execute(  # type: ignore[attr-defined]
            "INSERT OR IGNORE INTO incident_members (incident_id, request_id, source, ticket_id, channel, text, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (incident_id, m.request_id, m.source, m.ticket_id, m.channel, m.text[:2000], m.at),
        )

    def get(self, incident_id: str) -> IncidentRow | None:
        row = self.db.read().execute(_SELECT + " WHERE i.id = ?", (incident_id,)).fetchone()
        return IncidentRow(**dict(row)) if row else None

    def find(self, *, status: str | None = None, limit: int = 100) -> list[IncidentRow]:
        where, args = ("WHERE i.status = ?", [status]) if status else ("", [])
        rows = self.db.read().execute(
            f"{_SELECT} {where} ORDER BY i.opened_at DESC LIMIT ?", [*args, limit]
        ).fetchall()
        return [IncidentRow(**dict(r)) for r in rows]

    def open_ids(self) -> set[str]:
        return {r["id"] for r in self.db.read().execute("SELECT id FROM incidents WHERE status = 'open'")}

    def members(self, incident_id: str) -> list[Member]:
        rows = self.db.read().execute(
            "SELECT request_id, source, ticket_id, channel, text, at FROM incident_members WHERE incident_id = ?"
            " ORDER BY at, request_id", (incident_id,),
        ).fetchall()
        return [Member(**dict(r)) for r in rows]

    def incident_of(self, request_id: str) -> str | None:
        row = self.db.read().execute(
            "SELECT incident_id FROM incident_members WHERE request_id = ? LIMIT 1", (request_id,)
        ).fetchone()
        return row["incident_id"] if row else None

    def close(self, incident_id: str, *, by: str) -> bool:
        """Close an open incident; False when it is unknown or closed already."""
        with self.db.transaction() as db:
            cur = db.execute(
                "UPDATE incidents SET status = 'closed', closed_at = ?, closed_by = ? WHERE id = ? AND status = 'open'",
                (self.db.clock(), by[:200], incident_id),
            )
            return cur.rowcount == 1

    def set_message(self, incident_id: str, message: str) -> bool:
        with self.db.transaction() as db:
            cur = db.execute("UPDATE incidents SET message = ? WHERE id = ?", (message[:1000], incident_id))
            return cur.rowcount == 1

    def release_note(self, incident_id: str) -> None:
        """Posting the note failed: let the next attempt claim it again."""
        with self.db.transaction() as db:
            db.execute("UPDATE incidents SET note_posted_at = NULL WHERE id = ?", (incident_id,))

    def claim_note(self, incident_id: str) -> bool:
        """True once per incident: whoever gets it posts the agents' note linking the tickets."""
        with self.db.transaction() as db:
            cur = db.execute(
                "UPDATE incidents SET note_posted_at = ? WHERE id = ? AND note_posted_at IS NULL",
                (self.db.clock(), incident_id),
            )
            return cur.rowcount == 1
