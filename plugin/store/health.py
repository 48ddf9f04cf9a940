"""Connection health: per source (a helpdesk, the mailbox), the first transient failure of the current
streak (what ``/healthz`` shows as "unreachable since") until the next success clears it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from plugin.store.db import Database, clip_error

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConnectionHealth:
    """What the worker last saw of one source (a helpdesk, the mailbox). Times are the store's clock."""

    source: str
    #: The first transient failure of the current streak; None once a success ended it.
    failing_since: float | None
    last_failure_at: float | None
    last_error: str | None
    #: Transient failures in the current streak.
    failures: int
    last_success_at: float | None


class Health:
    def __init__(self, db: Database) -> None:
        self.db = db

    def note_failure(self, source: str, error: str) -> None:
        """A transient failure talking to ``source``: starts a streak (its time kept) or extends it."""
        now = self.db.clock()
        with self.db.transaction() as db:
            db.execute(
                "INSERT INTO connection_health (source, failing_since, last_failure_at, last_error, failures)"
                " VALUES (?, ?, ?, ?, 1) ON CONFLICT (source) DO UPDATE SET"
                " failing_since = COALESCE(failing_since, excluded.failing_since),"
                " last_failure_at = excluded.last_failure_at, last_error = excluded.last_error,"
                " failures = failures + 1",
                (source, now, now, clip_error(error)),
            )

    def note_success(self, source: str) -> None:
        """``source`` answered: the streak of failures (if any) ends. Writes only when one was open,
        so that the common case costs a read."""
        row = self.db.read().execute(
            "SELECT failing_since FROM connection_health WHERE source = ?", (source,)
        ).fetchone()
        if row is None or row["failing_since"] is None:
            return
        with self.db.transaction() as db:
            db.execute(
                "UPDATE connection_health SET failing_since = NULL, failures = 0, last_success_at = ?"
                " WHERE source = ?",
                (self.db.clock(), source),
            )
        log.info("connection_restored source=%s", source, extra={"event": "connection_restored", "source": source})

    def connection_health(self) -> dict[str, ConnectionHealth]:
        """What is known per source (sources never seen failing are absent)."""
        rows = self.db.read().execute("SELECT * FROM connection_health ORDER BY source").fetchall()
        return {
            r["source"]: ConnectionHealth(
                source=r["source"], failing_since=r["failing_since"], last_failure_at=r["last_failure_at"],
                last_error=r["last_error"], failures=r["failures"], last_success_at=r["last_success_at"],
            )
            for r in rows
        }
