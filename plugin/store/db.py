"""The database under every store: one SQLite file (WAL) shared by threads and processes.

Connections: one per thread (and per process: a connection is never used across ``fork``), in
autocommit mode; writes go through :meth:`Database.transaction` (``BEGIN IMMEDIATE``), so two
writers queue on SQLite's lock (``busy_timeout`` 30 s) instead of failing.

Schema: named blocks, each at a version, applied once in the order of :data:`plugin.store.migrations.MIGRATIONS`
(:meth:`Database.ensure_schema` records ``(name, version)`` in ``schema_versions``). A file made by an
earlier release has some blocks already: opening it applies only the later ones, so an existing
``var/`` is upgraded in place.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

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

def _casefold(value: object) -> str | None:
    return None if value is None else str(value).casefold()


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


class Database:
    """One SQLite file for the plugin's state. Safe across threads and processes.

    ``clock`` (seconds, like :func:`time.time`) decides what "now" is for every store on this file
    (leases, delays, timestamps); tests inject a fake one.
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

    # -- connections ---------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        db.row_factory = sqlite3.Row
        # SQLite's lower() folds ASCII only: searches in Russian text use this one.
        db.create_function("casefold", 1, _casefold, deterministic=True)
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

