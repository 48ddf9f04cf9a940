"""The knowledge base of record and the learned pairs, in SQLite (WAL).

Entries are the source of truth; the vector store and the lexical index are derived from them and can
be rebuilt at any time (``kb reindex``). Each entry remembers the content hash it was last embedded
with, so that a re-import only re-embeds what changed.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rag.models import KBEntry

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    categories TEXT NOT NULL DEFAULT '[]',
    origin TEXT NOT NULL DEFAULT '',
    content_hash TEXT NOT NULL,
    indexed_hash TEXT,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_source ON entries(source);
CREATE TABLE IF NOT EXISTS learned (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    query TEXT NOT NULL,
    answer_id TEXT NOT NULL,
    entry_id TEXT NOT NULL,
    polarity INTEGER NOT NULL CHECK (polarity IN (-1, 1)),
    origin TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    indexed INTEGER NOT NULL DEFAULT 0,
    UNIQUE (query, answer_id, polarity)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass
class UpsertReport:
    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LearnedPair:
    id: int
    query: str
    answer_id: str
    entry_id: str
    polarity: int
    origin: str


class KBStore:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._local = threading.local()
        self._db().executescript(_SCHEMA)  # executescript manages its own transaction

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # -- entries -------------------------------------------------------------------------------------
    def upsert(self, entries: Iterable[KBEntry], *, prune_source: str | None = None) -> UpsertReport:
        """Insert new entries, update changed ones; with ``prune_source``, remove that source's others."""
        report = UpsertReport()
        now = time.time()
        with self._tx() as db:
            for e in entries:
                row = db.execute("SELECT content_hash FROM entries WHERE id = ?", (e.id,)).fetchone()
                report.ids.append(e.id)
                if row is not None and row["content_hash"] == e.content_hash:
                    report.unchanged += 1
                    continue
                db.execute(
                    """INSERT INTO entries (id, source, question, answer, title, categories, origin,
                           content_hash, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT(id) DO UPDATE SET source=excluded.source, question=excluded.question,
                           answer=excluded.answer, title=excluded.title, categories=excluded.categories,
                           origin=excluded.origin, content_hash=excluded.content_hash,
                           updated_at=excluded.updated_at""",
                    (e.id, e.source, e.question, e.answer, e.title,
                     json.dumps(list(e.categories), ensure_ascii=False), e.origin, e.content_hash, now),
                )
                if row is None:
                    report.imported += 1
                else:
                    report.updated += 1
            if prune_source is not None:
                keep = set(report.ids)
                stale = [r["id"] for r in db.execute("SELECT id FROM entries WHERE source = ?", (prune_source,))
                         if r["id"] not in keep]
                db.executemany("DELETE FROM entries WHERE id = ?", [(i,) for i in stale])
                report.removed = len(stale)
        return report

    def entries(self) -> list[KBEntry]:
        rows = self._db().execute("SELECT * FROM entries ORDER BY rowid").fetchall()
        return [_entry(r) for r in rows]

    def count(self) -> int:
        return int(self._db().execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def stale_entries(self) -> list[KBEntry]:
        """Entries whose current content has not been embedded yet."""
        rows = self._db().execute(
            "SELECT * FROM entries WHERE indexed_hash IS NULL OR indexed_hash != content_hash ORDER BY rowid"
        ).fetchall()
        return [_entry(r) for r in rows]

    def mark_indexed(self, entries: Iterable[KBEntry]) -> None:
        with self._tx() as db:
            db.executemany(
                "UPDATE entries SET indexed_hash = ? WHERE id = ?", [(e.content_hash, e.id) for e in entries]
            )

    def clear_indexed_entries(self, titles: Iterable[str] | None = None) -> None:
        """Embed the entries with these titles again on the next sync, or every entry (what their vectors
        are built from has changed); the confirmed requests' vectors are kept."""
        with self._tx() as db:
            _clear_entries(db, titles)

    def clear_indexed(self) -> None:
        """Embed everything again on the next sync: every entry and every confirmed request (a new model).
        One transaction: after ``reindex`` dropped the vectors, no confirmed request may stay marked indexed."""
        with self._tx() as db:
            _clear_entries(db, None)
            db.execute("UPDATE learned SET indexed = 0")

    # -- learned pairs -------------------------------------------------------------------------------
    def add_learned(self, query: str, answer_id: str, entry_id: str, polarity: int, origin: str = "") -> bool:
        """Record a confirmed (+1) or rejected (-1) pair; False when it was already recorded."""
        with self._tx() as db:
            cur = db.execute(
                """INSERT OR IGNORE INTO learned (query, answer_id, entry_id, polarity, origin, created_at)
                   VALUES (?, ?, ?, ?, ?, ?)""",
                (query, answer_id, entry_id, polarity, origin, time.time()),
            )
            return cur.rowcount == 1

    def learned(self, *, unindexed_only: bool = False) -> list[LearnedPair]:
        sql = (
            "SELECT * FROM learned WHERE indexed = 0 ORDER BY id"
            if unindexed_only
            else "SELECT * FROM learned ORDER BY id"
        )
        return [
            LearnedPair(r["id"], r["query"], r["answer_id"], r["entry_id"], r["polarity"], r["origin"])
            for r in self._db().execute(sql)
        ]

    def mark_learned_indexed(self, ids: Iterable[int]) -> None:
        with self._tx() as db:
            db.executemany("UPDATE learned SET indexed = 1 WHERE id = ?", [(i,) for i in ids])

    def learned_version(self) -> int:
        """Changes whenever a pair is added or removed (for caches of what is derived from them)."""
        row = self._db().execute("SELECT COALESCE(MAX(id), 0) * 1000003 + COUNT(*) FROM learned").fetchone()
        return int(row[0])

    def learned_per_answer(self) -> dict[str, tuple[int, int]]:
        """Answer id → (confirmed, rejected) pairs."""
        out: dict[str, tuple[int, int]] = {}
        for aid, pos, neg in self._db().execute(
            "SELECT answer_id, SUM(polarity > 0), SUM(polarity < 0) FROM learned GROUP BY answer_id"
        ):
            out[str(aid)] = (int(pos), int(neg))
        return out

    def delete_learned(self, ids: Iterable[int] | None = None) -> list[int]:
        """Forget the given pairs (all of them with None); the ids removed."""
        with self._tx() as db:
            if ids is None:
                gone = [int(r[0]) for r in db.execute("SELECT id FROM learned")]
            else:  # only those that exist: the caller is told what was there
                gone = [int(i) for i in ids if db.execute("SELECT 1 FROM learned WHERE id = ?", (int(i),)).fetchone()]
            db.executemany("DELETE FROM learned WHERE id = ?", [(i,) for i in gone])
        return gone

    def learned_counts(self) -> dict[str, int]:
        rows = self._db().execute("SELECT polarity, COUNT(*) FROM learned GROUP BY polarity").fetchall()
        counts = {"confirmed": 0, "rejected": 0}
        for polarity, n in rows:
            counts["confirmed" if polarity > 0 else "rejected"] = int(n)
        return counts

    # -- meta ----------------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._db().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, value),
            )


def _entry(r: sqlite3.Row) -> KBEntry:
    return KBEntry(
        id=r["id"], question=r["question"], answer=r["answer"], title=r["title"],
        categories=tuple(json.loads(r["categories"])), source=r["source"], origin=r["origin"],
    )


def _clear_entries(db: sqlite3.Connection, titles: Iterable[str] | None) -> None:
    """Mark the entries with these titles (None: every entry) as not embedded, inside ``db``'s transaction."""
    if titles is None:
        db.execute("UPDATE entries SET indexed_hash = NULL")
    else:
        db.executemany("UPDATE entries SET indexed_hash = NULL WHERE title = ?", [(t,) for t in titles])
