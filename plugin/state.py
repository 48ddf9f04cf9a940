"""The durable state store: one SQLite file (WAL) shared by threads and processes.

What lives here: named schema blocks applied once (:meth:`StateStore.ensure_schema`, so that other
modules register their own tables in the same file), the *inbox* of accepted events that the worker
takes with a lease, and the pollers' *watermarks*.

Connections: one per thread (and per process: a connection is never used across ``fork``), in
autocommit mode; writes go through :meth:`StateStore.transaction` (``BEGIN IMMEDIATE``), so two
writers queue on SQLite's lock (``busy_timeout`` 30 s) instead of failing.

The inbox works at least once: an item is taken with a lease (:meth:`StateStore.claim`); when the
worker holding it dies, the lease runs out and another worker takes it again. Handlers must therefore
be idempotent. Error texts stored with an item are the callers' messages, clipped; never payloads.

Done items are purged after a while (:meth:`StateStore.purge_done`), but their delivery keys are
kept in a compact table (key and time only) for a longer window, so that a helpdesk replaying an
old delivery is still recognised as a duplicate. The *connection health* table records, per
source, the first transient failure of the current streak (what ``/healthz`` shows as "unreachable
since") until the next success clears it.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

InboxStatus = Literal["pending", "leased", "done", "dead"]
INBOX_STATUSES: tuple[InboxStatus, ...] = ("pending", "leased", "done", "dead")

#: Longest error text kept with an inbox item.
MAX_ERROR_CHARS = 2000

_BUSY_TIMEOUT_S = 30.0

#: Connections inherited through ``fork``, never touched again by the child.
_FORKED_AWAY: list[sqlite3.Connection] = []

_SCHEMA_VERSIONS_DDL = """
CREATE TABLE IF NOT EXISTS schema_versions (
    name TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    applied_at REAL NOT NULL
)
"""

_INBOX_DDL = """
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    delivery_key TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'leased', 'done', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    available_at REAL NOT NULL,
    lease_owner TEXT,
    lease_until REAL,
    last_error TEXT,
    received_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    done_at REAL
);
CREATE INDEX IF NOT EXISTS inbox_status_available ON inbox (status, available_at);
CREATE INDEX IF NOT EXISTS inbox_status_lease ON inbox (status, lease_until);
CREATE TABLE IF NOT EXISTS watermarks (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""

# Issue 8: retries bounded by time, crashes counted apart, purging with the keys kept, health.
_INBOX_V2_DDL = """
ALTER TABLE inbox ADD COLUMN failing_since REAL;
ALTER TABLE inbox ADD COLUMN lost_leases INTEGER NOT NULL DEFAULT 0;
ALTER TABLE inbox ADD COLUMN gave_up INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS inbox_status_done ON inbox (status, done_at);
CREATE TABLE IF NOT EXISTS delivery_keys (
    delivery_key TEXT PRIMARY KEY,
    received_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS delivery_keys_received ON delivery_keys (received_at);
CREATE TABLE IF NOT EXISTS connection_health (
    source TEXT PRIMARY KEY,
    failing_since REAL,
    last_failure_at REAL,
    last_error TEXT,
    failures INTEGER NOT NULL DEFAULT 0,
    last_success_at REAL
);
"""


@dataclass(frozen=True, slots=True)
class InboxItem:
    """One accepted event, as stored (``payload`` decoded)."""

    id: int
    source: str
    kind: str
    delivery_key: str
    payload: dict[str, Any]
    status: InboxStatus
    attempts: int
    available_at: float
    lease_owner: str | None
    lease_until: float | None
    last_error: str | None
    received_at: float
    updated_at: float
    done_at: float | None
    #: When the first failure of this item's current run of retries happened (None: never failed).
    failing_since: float | None = None
    #: How many times a worker took the item over from another whose lease had run out (crashes).
    lost_leases: int = 0
    #: Dead because the worker gave up retrying a transient failure (a later poll may revive it).
    gave_up: bool = False

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> InboxItem:
        return cls(
            id=row["id"], source=row["source"], kind=row["kind"], delivery_key=row["delivery_key"],
            payload=json.loads(row["payload"]), status=row["status"], attempts=row["attempts"],
            available_at=row["available_at"], lease_owner=row["lease_owner"], lease_until=row["lease_until"],
            last_error=row["last_error"], received_at=row["received_at"], updated_at=row["updated_at"],
            done_at=row["done_at"], failing_since=row["failing_since"], lost_leases=row["lost_leases"],
            gave_up=bool(row["gave_up"]),
        )


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


def clip_error(error: str) -> str:
    """``error`` cut to :data:`MAX_ERROR_CHARS` characters (an ellipsis marks the cut)."""
    error = str(error)
    return error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 1] + "…"


def split_sql(ddl: str) -> list[str]:
    """The complete statements of a SQL script (``;`` inside strings and triggers respected)."""
    statements: list[str] = []
    buf = ""
    for piece in ddl.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \t\r\n;"):
                statements.append(buf.strip())
            buf = ""
    if buf.strip(" \t\r\n;"):
        raise ValueError("the SQL block ends with an incomplete statement")
    return statements


class StateStore:
    """One SQLite file for the plugin's state. Safe across threads and processes.

    ``clock`` (seconds, like :func:`time.time`) decides what "now" is for leases, delays and
    timestamps; tests inject a fake one.
    """

    def __init__(self, path: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: dict[threading.Thread, sqlite3.Connection] = {}
        self._pid = os.getpid()
        self._applied: dict[str, int] = {}
        with self.transaction() as db:
            db.execute(_SCHEMA_VERSIONS_DDL)
        self.ensure_schema("state.inbox", 1, _INBOX_DDL)
        self.ensure_schema("state.inbox", 2, _INBOX_V2_DDL)

    # -- connections ---------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        return db

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None and self._local.pid == os.getpid():
            return db
        with self._lock:
            if self._pid != os.getpid():
                # A forked child: the parent's connections must not be used here, nor closed (kept
                # referenced so that garbage collection does not close them either).
                _FORKED_AWAY.extend(self._conns.values())
                self._pid = os.getpid()
                self._conns = {}
            for thread in [t for t in self._conns if not t.is_alive()]:
                self._conns.pop(thread).close()
            db = self._connect()
            self._conns[threading.current_thread()] = db
        self._local.db = db
        self._local.pid = os.getpid()
        return db

    def read(self) -> sqlite3.Connection:
        """This thread's connection, for reads (each statement sees the last committed state)."""
        return self._db()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``): committed on exit, rolled back on error.

        Nested use on the same thread becomes a savepoint inside the outer transaction.
        """
        db = self._db()
        if db.in_transaction:
            depth = getattr(self._local, "depth", 0) + 1
            self._local.depth = depth
            name = f"sp{depth}"
            db.execute(f"SAVEPOINT {name}")
            try:
                yield db
            except BaseException:
                if db.in_transaction:
                    db.execute(f"ROLLBACK TO {name}")
                    db.execute(f"RELEASE {name}")
                raise
            finally:
                self._local.depth = depth - 1
            db.execute(f"RELEASE {name}")
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close every connection this process opened (the store reconnects on next use)."""
        with self._lock:
            conns, self._conns = self._conns, {}
        for db in conns.values():
            db.close()
        self._local = threading.local()

    # -- schema --------------------------------------------------------------------------------------
    def ensure_schema(self, name: str, version: int, ddl: str) -> bool:
        """Apply the DDL block ``name`` at ``version`` once; True when it was applied now.

        A block is skipped when ``name`` is already at ``version`` or above, so migrations are
        registered in order: ``ensure_schema("pipeline", 1, create)``, then
        ``ensure_schema("pipeline", 2, alter)``. The block and its version record commit together.
        """
        if self._applied.get(name, 0) >= version:
            return False
        statements = split_sql(ddl)
        with self.transaction() as db:
            rows = db.execute("SELECT version FROM schema_versions WHERE name = ?", (name,)).fetchall()
            current = rows[0]["version"] if rows else 0
            if current >= version:
                self._applied[name] = current
                return False
            for statement in statements:
                db.execute(statement)
            db.execute(
                "INSERT INTO schema_versions (name, version, applied_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET version = excluded.version, applied_at = excluded.applied_at",
                (name, version, self.clock()),
            )
        self._applied[name] = version
        log.info("schema_applied name=%s version=%s", name, version)
        return True

    def schema_version(self, name: str) -> int:
        """The version of the block ``name`` in the file (0 when never applied)."""
        row = self.read().execute("SELECT version FROM schema_versions WHERE name = ?", (name,)).fetchone()
        return int(row["version"]) if row else 0

    # -- inbox ---------------------------------------------------------------------------------------
    def enqueue(
        self, source: str, kind: str, delivery_key: str, payload: dict[str, Any], *, delay_s: float = 0.0,
        revive: bool = False,
    ) -> int | None:
        """Persist an event; its id, or None when ``delivery_key`` is already known (a replay, also
        of an item purged since: :meth:`purge_done` keeps the keys).

        ``revive``: when the key belongs to an item the worker gave up on (dead after retrying a
        transient failure for ``worker.retry_for_h``), put that item back to pending and return its
        id: the poller saw the ticket again, so the helpdesk answers once more. Items dead for a
        permanent reason stay dead. Committed when it returns. ``payload`` must be JSON-serializable.
        """
        if not delivery_key:
            raise ValueError("delivery_key must not be empty")
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        now = self.clock()
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM delivery_keys WHERE delivery_key = ?", (delivery_key,)).fetchone():
                return None
            cur = db.execute(
                "INSERT INTO inbox (source, kind, delivery_key, payload, status, attempts, available_at,"
                " received_at, updated_at) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?, ?)"
                " ON CONFLICT (delivery_key) DO NOTHING",
                (source, kind, delivery_key, body, now + max(0.0, delay_s), now, now),
            )
            if cur.rowcount == 1:
                return cur.lastrowid
            if not revive:
                return None
            rows = db.execute(
                "UPDATE inbox SET status = 'pending', attempts = 0, available_at = ?, updated_at = ?,"
                " failing_since = NULL, lost_leases = 0, gave_up = 0"
                " WHERE delivery_key = ? AND status = 'dead' AND gave_up = 1 RETURNING id",
                (now, now, delivery_key),
            ).fetchall()
        if not rows:
            return None
        log.info("inbox_item_revived id=%s source=%s: seen again by a poll after the worker gave up",
                 rows[0]["id"], source, extra={"event": "inbox_item_revived", "item_id": rows[0]["id"]})
        return int(rows[0]["id"])

    def claim(self, owner: str, lease_s: float, *, kinds: Collection[str] | None = None) -> InboxItem | None:
        """Take the oldest available item for ``lease_s`` seconds, or None.

        Available: pending and due, or leased with its lease run out (the worker holding it died).
        Taking it counts an attempt, and taking it over from an expired lease counts a lost lease
        (``lost_leases``). While the lease holds, nobody else gets the item.
        """
        if kinds is not None and not kinds:
            return None
        now = self.clock()
        sql = (
            "SELECT id FROM inbox WHERE ((status = 'pending' AND available_at <= ?)"
            " OR (status = 'leased' AND lease_until < ?))"
        )
        args: list[Any] = [now, now]
        if kinds is not None:
            kind_list = sorted(kinds)
            sql += f" AND kind IN ({','.join('?' * len(kind_list))})"
            args += kind_list
        sql += " ORDER BY id LIMIT 1"
        with self.transaction() as db:
            rows = db.execute(sql, args).fetchall()
            if not rows:
                return None
            updated = db.execute(
                # SET expressions read the row as it was: status = 'leased' here means an expired lease.
                "UPDATE inbox SET status = 'leased', lease_owner = ?, lease_until = ?, attempts = attempts + 1,"
                " lost_leases = lost_leases + (status = 'leased'), updated_at = ? WHERE id = ? RETURNING *",
                (owner, now + lease_s, now, rows[0]["id"]),
            ).fetchall()[0]
        return InboxItem.from_row(updated)

    def _owned_update(self, item_id: int, owner: str, assignments: str, args: tuple[Any, ...]) -> bool:
        with self.transaction() as db:
            cur = db.execute(
                f"UPDATE inbox SET {assignments}, updated_at = ?"  # noqa: S608 - fixed column lists
                " WHERE id = ? AND status = 'leased' AND lease_owner = ?",
                (*args, self.clock(), item_id, owner),
            )
            return cur.rowcount == 1

    def complete(self, item_id: int, owner: str) -> bool:
        """Mark done; False when ``owner`` no longer holds the item (another worker took it)."""
        return self._owned_update(
            item_id, owner, "status = 'done', done_at = ?, lease_owner = NULL, lease_until = NULL", (self.clock(),)
        )

    def retry_later(self, item_id: int, owner: str, error: str, delay_s: float) -> bool:
        """Give the item back, available again in ``delay_s`` seconds; False when not held.

        The first failure's time is kept (``failing_since``): the worker gives up by time, not count.
        """
        now = self.clock()
        return self._owned_update(
            item_id, owner,
            "status = 'pending', available_at = ?, last_error = ?, lease_owner = NULL, lease_until = NULL,"
            " failing_since = COALESCE(failing_since, ?)",
            (now + max(0.0, delay_s), clip_error(error), now),
        )

    def bury(self, item_id: int, owner: str, error: str, *, gave_up: bool = False) -> bool:
        """Park the item as dead with ``error`` (shown to the admin); False when not held.

        ``gave_up``: the worker stopped retrying a transient failure (a later poll that sees the
        ticket again revives it, see :meth:`enqueue`); otherwise the reason is permanent.
        """
        return self._owned_update(
            item_id, owner,
            "status = 'dead', last_error = ?, gave_up = ?, lease_owner = NULL, lease_until = NULL",
            (clip_error(error), int(gave_up)),
        )

    def extend_lease(self, item_id: int, owner: str, lease_s: float) -> bool:
        """Hold the item ``lease_s`` seconds from now; False when ``owner`` no longer holds it."""
        return self._owned_update(item_id, owner, "lease_until = ?", (self.clock() + lease_s,))

    def requeue(self, item_id: int) -> bool:
        """A dead item back to pending, attempts reset (the admin's "retry"); False if not dead."""
        now = self.clock()
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE inbox SET status = 'pending', attempts = 0, available_at = ?, updated_at = ?,"
                " failing_since = NULL, lost_leases = 0, gave_up = 0 WHERE id = ? AND status = 'dead'",
                (now, now, item_id),
            )
            return cur.rowcount == 1

    def get(self, item_id: int) -> InboxItem | None:
        row = self.read().execute("SELECT * FROM inbox WHERE id = ?", (item_id,)).fetchone()
        return InboxItem.from_row(row) if row else None

    def items(self, status: str | None = None, limit: int = 50) -> list[InboxItem]:
        """The newest items first, optionally of one status (ValueError for an unknown status)."""
        if status is not None and status not in INBOX_STATUSES:
            raise ValueError(f"unknown inbox status {status!r}; expected one of {', '.join(INBOX_STATUSES)}")
        if status is None:
            rows = self.read().execute("SELECT * FROM inbox ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        else:
            rows = self.read().execute(
                "SELECT * FROM inbox WHERE status = ? ORDER BY id DESC LIMIT ?", (status, limit)
            ).fetchall()
        return [InboxItem.from_row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Items per status; every status present (0 when none)."""
        out: dict[str, int] = dict.fromkeys(INBOX_STATUSES, 0)
        for row in self.read().execute("SELECT status, COUNT(*) AS n FROM inbox GROUP BY status"):
            out[row["status"]] = row["n"]
        return out

    def purge_done(self, older_than_s: float) -> int:
        """Delete items done more than ``older_than_s`` seconds ago; how many were deleted.

        Their delivery keys move to the compact ``delivery_keys`` table (key and reception time), so
        a replay arriving after the purge is still refused as a duplicate; :meth:`purge_delivery_keys`
        forgets them after a longer window. Pending, leased and dead items are never purged.
        """
        cutoff = self.clock() - older_than_s
        with self.transaction() as db:
            db.execute(
                "INSERT INTO delivery_keys (delivery_key, received_at)"
                " SELECT delivery_key, received_at FROM inbox WHERE status = 'done' AND done_at < ?"
                " ON CONFLICT (delivery_key) DO NOTHING",
                (cutoff,),
            )
            cur = db.execute("DELETE FROM inbox WHERE status = 'done' AND done_at < ?", (cutoff,))
            return cur.rowcount

    def purge_delivery_keys(self, older_than_s: float) -> int:
        """Forget the keys of purged items received more than ``older_than_s`` seconds ago (a replay
        older than that is accepted again); how many were forgotten."""
        with self.transaction() as db:
            cur = db.execute("DELETE FROM delivery_keys WHERE received_at < ?", (self.clock() - older_than_s,))
            return cur.rowcount

    # -- connection health ---------------------------------------------------------------------------
    def note_failure(self, source: str, error: str) -> None:
        """A transient failure talking to ``source``: starts a streak (its time kept) or extends it."""
        now = self.clock()
        with self.transaction() as db:
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
        row = self.read().execute(
            "SELECT failing_since FROM connection_health WHERE source = ?", (source,)
        ).fetchone()
        if row is None or row["failing_since"] is None:
            return
        with self.transaction() as db:
            db.execute(
                "UPDATE connection_health SET failing_since = NULL, failures = 0, last_success_at = ?"
                " WHERE source = ?",
                (self.clock(), source),
            )
        log.info("connection_restored source=%s", source, extra={"event": "connection_restored", "source": source})

    def connection_health(self) -> dict[str, ConnectionHealth]:
        """What is known per source (sources never seen failing are absent)."""
        rows = self.read().execute("SELECT * FROM connection_health ORDER BY source").fetchall()
        return {
            r["source"]: ConnectionHealth(
                source=r["source"], failing_since=r["failing_since"], last_failure_at=r["last_failure_at"],
                last_error=r["last_error"], failures=r["failures"], last_success_at=r["last_success_at"],
            )
            for r in rows
        }

    # -- watermarks ----------------------------------------------------------------------------------
    def get_watermark(self, name: str) -> str | None:
        row = self.read().execute("SELECT value FROM watermarks WHERE name = ?", (name,)).fetchone()
        return row["value"] if row else None

    def set_watermark(self, name: str, value: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO watermarks (name, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (name, value, self.clock()),
            )
