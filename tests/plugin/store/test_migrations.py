"""Migrations: a state file made by the release before the store was split (its schema and data as
that release wrote them, spelled out here, not imported) opens with everything found again, and its
outcomes are now a history."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from plugin.store import Store
from plugin.store.migrations import MIGRATIONS

# The schema of the release before (plugin/state.py, plugin/records.py, plugin/mail_flow.py at that time).
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

_RECORDS_DDL = """
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

_MAIL_DDL = """
CREATE TABLE IF NOT EXISTS mail_conversations (
    id TEXT PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    from_addr TEXT NOT NULL,
    subject TEXT NOT NULL DEFAULT '',
    language TEXT NOT NULL DEFAULT 'ru',
    raw BLOB NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL,
    reply_message_id TEXT,
    answered_at REAL,
    deadline REAL,
    forwarded_at REAL,
    forward_reason TEXT NOT NULL DEFAULT '',
    closed_at REAL
);
CREATE INDEX IF NOT EXISTS mail_conversations_sender ON mail_conversations (from_addr, answered_at);
CREATE INDEX IF NOT EXISTS mail_conversations_deadline ON mail_conversations (state, deadline);
"""


ENTRIES = [{"entry_id": "e1", "answer_id": "a1", "title": "VPN", "question": "vpn?", "answer": "Reconnect.",
            "score": 3.2, "confidence": 0.81, "origin": ""}]


def _old_file(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.executescript(_SCHEMA_VERSIONS_DDL + ";" + _INBOX_DDL + _RECORDS_DDL + _MAIL_DDL)
        db.executemany("INSERT INTO schema_versions VALUES (?, 1, 0)", [("state.inbox",), ("records",), ("mail",)])
        db.execute(
            "INSERT INTO inbox (source, kind, delivery_key, payload, status, attempts, available_at, received_at,"
            " updated_at, last_error) VALUES ('redmine', 'ticket_event', 'redmine:7:1', '{\"ticket_id\": \"7\"}',"
            " 'dead', 8, 10, 10, 20, 'gave up after 8 attempts: TransientConnectorError: 503')"
        )
        db.execute("INSERT INTO inbox (source, kind, delivery_key, payload, status, attempts, available_at, received_at,"
                   " updated_at, done_at) VALUES ('glpi', 'ticket_event', 'glpi:x', '{}', 'done', 1, 5, 5, 6, 6)")
        db.execute("INSERT INTO watermarks VALUES ('poll:redmine', '2026-11-30T10:00:00Z', 30)")
        columns = ("id, source, ticket_id, created_at, mode, language, ticket_title, query, category, confidence,"
                   " threshold, answer_text, answer_mode, entries, requester_id, public_comment_id, private_comment_id")
        for sid, ticket, created in (("s1", "7", 100.0), ("s2", "8", 200.0), ("s3", "9", 300.0)):
            db.execute(
                f"INSERT INTO suggestions ({columns}) VALUES (?, 'redmine', ?, ?, 'public', 'ru', 'VPN', 'vpn', 'VPN',"
                " 0.81, 0.5, 'Reconnect.', 'extractive', ?, '5', 'c1', 'c2')",
                (sid, ticket, created, json.dumps(ENTRIES)),
            )
        db.execute("UPDATE suggestions SET outcome = 'solved', outcome_via = 'link', outcome_at = 150,"
                   " outcome_client = '{\"ip\": \"10.0.0.1\"}', outcome_applied_at = 160 WHERE id = 's1'")
        db.execute("UPDATE suggestions SET outcome = 'not_solved', outcome_via = 'mail', outcome_at = 250,"
                   " outcome_reason = 'not_related', outcome_comment = 'wrong one' WHERE id = 's2'")
        db.execute("INSERT INTO ticket_log VALUES ('redmine', '7', 100, 'decided', 'public p=0.81')")
        db.execute("INSERT INTO mail_conversations (id, message_id, from_addr, subject, language, raw, created_at,"
                   " state, answered_at) VALUES ('m1', '<1@x>', 'Ivan@Example.ru', 'vpn', 'ru', x'4869', 400,"
                   " 'answered', 410)")


def test_an_old_state_file_is_upgraded_and_everything_is_found(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    _old_file(path)

    store = Store.open(path)

    # Every block is at its newest version.
    for m in MIGRATIONS:
        assert store.db.schema_version(m.name) >= m.version
    # The inbox: both items, with their status, attempts, error, and the new columns' defaults.
    dead, done = sorted(store.inbox.items(), key=lambda i: i.id)
    assert (dead.status, dead.attempts, dead.source, dead.payload) == ("dead", 8, "redmine", {"ticket_id": "7"})
    assert dead.last_error.startswith("gave up after 8 attempts")
    assert (dead.gave_up, dead.lost_leases, dead.discard_reason) == (False, 0, None)
    assert done.status == "done" and done.done_at == 6
    assert store.inbox.get_watermark("poll:redmine") == "2026-11-30T10:00:00Z"
    assert store.inbox.enqueue("redmine", "ticket_event", "redmine:7:1", {}) is None  # the key is still known
    assert store.inbox.requeue(dead.id) and store.inbox.discard(dead.id, reason="duplicate of #2")
    # Suggestions: their fields, and the outcome the old columns held, now derived from the history.
    s1, s2, s3 = (store.suggestions.get(sid) for sid in ("s1", "s2", "s3"))
    assert s1 is not None and s2 is not None and s3 is not None
    assert (s1.ticket_id, s1.mode, s1.confidence, s1.entries[0].answer, s1.public_comment_id) == (
        "7", "public", 0.81, "Reconnect.", "c1")
    assert (s1.outcome, s1.outcome_via, s1.outcome_at, s1.outcome_applied_at) == ("solved", "link", 150, 160)
    assert (s2.outcome, s2.outcome_via, s2.outcome_reason, s2.outcome_comment) == (
        "not_solved", "mail", "not_related", "wrong one")
    assert s3.outcome is None
    assert [(e.kind, e.at, e.channel) for e in store.suggestions.events("s1")] == [
        ("suggested", 100.0, "redmine"), ("confirmed", 150.0, "link")]
    assert [e.kind for e in store.suggestions.events("s2")] == ["suggested", "rejected"]
    assert [e.kind for e in store.suggestions.events("s3")] == ["suggested"]
    # The first answer still stands after the upgrade.
    again, first = store.suggestions.record_outcome("s1", "not_solved", via="link")
    assert (again.outcome, first) == ("solved", False)
    assert store.suggestions.history("redmine", "7") == [("decided", "public p=0.81")]
    assert store.suggestions.counts() == {"public": {"solved": 1, "not_solved": 1, "pending": 1}}
    assert store.suggestions.similar_confirmed("a1", exclude="s3")[0].id == "s1"
    # Mail conversations, with the column added since (the rate limit counts old answers by From).
    conv = store.mail.get("m1")
    assert conv is not None and conv["state"] == "answered" and bytes(conv["raw"]) == b"Hi"
    assert store.mail.replies_since("ivan@example.ru", 0) == 1
    store.close()

    # Opening it again applies nothing more and changes nothing.
    again_store = Store.open(path)
    assert [e.kind for e in again_store.suggestions.events("s1")] == ["suggested", "confirmed"]
    again_store.close()


def test_a_new_file_gets_every_migration_once(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "new.sqlite3")
    applied = store.db.read().execute("SELECT name, version FROM schema_versions ORDER BY name").fetchall()
    newest: dict[str, int] = {}
    for m in MIGRATIONS:
        newest[m.name] = max(newest.get(m.name, 0), m.version)
    assert {r["name"]: r["version"] for r in applied} == newest
    store.close()
