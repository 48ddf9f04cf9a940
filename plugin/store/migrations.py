"""Every schema change of the state file, in the order it is applied.

A migration is a named block at a version (``ensure_schema``): a file made by an earlier release has the
blocks it knew recorded in ``schema_versions`` and gets only the later ones, in this order, each in one
transaction with its record. Append new migrations at the end; never edit one that has shipped.
"""

from __future__ import annotations

from typing import NamedTuple


class Migration(NamedTuple):
    name: str
    version: int
    ddl: str


INBOX_V1 = """
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

# Retries bounded by time, crashes counted apart, purging with the keys kept, connection health.
INBOX_V2 = """
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

SUGGESTIONS_V1 = """
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

MAIL_V1 = """
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

# The address a reply goes to (Reply-To, else From), lower-cased: the rate limit counts it, since a
# forged From with someone else's Reply-To must not multiply the answers that person gets. Rows from
# before this column count by their From, as they did.
MAIL_V2 = """
ALTER TABLE mail_conversations ADD COLUMN reply_addr TEXT NOT NULL DEFAULT '';
UPDATE mail_conversations SET reply_addr = lower(from_addr);
CREATE INDEX IF NOT EXISTS mail_conversations_reply_addr ON mail_conversations (reply_addr, answered_at);
"""

# Outcomes become a history (append-only events); the outcome columns of a suggestion are moved into it
# and derived from it from now on (the first confirmed / rejected event). "suggested" events are made
# for the suggestions that exist, at their creation time.
SUGGESTIONS_V2 = """
CREATE TABLE IF NOT EXISTS outcome_events (
    id INTEGER PRIMARY KEY,
    suggestion_id TEXT NOT NULL REFERENCES suggestions (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('suggested', 'confirmed', 'rejected', 'reopened', 'closed_by_agent',
                                       'agent_replied', 'timed_out', 'handed_off')),
    at REAL NOT NULL,
    channel TEXT NOT NULL DEFAULT '',
    reason TEXT,
    comment TEXT NOT NULL DEFAULT '',
    client TEXT NOT NULL DEFAULT '{}',
    ref TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS outcome_events_suggestion ON outcome_events (suggestion_id, id);
CREATE INDEX IF NOT EXISTS outcome_events_kind_at ON outcome_events (kind, at);
CREATE UNIQUE INDEX IF NOT EXISTS outcome_events_once ON outcome_events (suggestion_id, kind, ref)
    WHERE kind NOT IN ('confirmed', 'rejected');
CREATE UNIQUE INDEX IF NOT EXISTS outcome_events_one_answer ON outcome_events (suggestion_id)
    WHERE kind IN ('confirmed', 'rejected');
INSERT INTO outcome_events (suggestion_id, kind, at, channel)
    SELECT id, 'suggested', created_at, source FROM suggestions ORDER BY created_at, id;
INSERT INTO outcome_events (suggestion_id, kind, at, channel, reason, comment, client)
    SELECT id, CASE outcome WHEN 'solved' THEN 'confirmed' ELSE 'rejected' END, outcome_at, COALESCE(outcome_via, ''),
           outcome_reason, outcome_comment, outcome_client
    FROM suggestions WHERE outcome IS NOT NULL ORDER BY outcome_at, id;
CREATE VIEW IF NOT EXISTS decisive_outcomes AS
    SELECT * FROM outcome_events WHERE kind IN ('confirmed', 'rejected');
DROP INDEX IF EXISTS suggestions_outcome;
ALTER TABLE suggestions DROP COLUMN outcome;
ALTER TABLE suggestions DROP COLUMN outcome_reason;
ALTER TABLE suggestions DROP COLUMN outcome_comment;
ALTER TABLE suggestions DROP COLUMN outcome_via;
ALTER TABLE suggestions DROP COLUMN outcome_at;
ALTER TABLE suggestions DROP COLUMN outcome_client;
"""

# An admin may discard an item (with a reason): a status of its own, kept (never purged), so nothing
# leaves the queue without a trace. SQLite cannot change a CHECK constraint in place: the table is
# rebuilt with the same columns, rows and ids.
INBOX_V3 = """
CREATE TABLE inbox_v3 (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    delivery_key TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'leased', 'done', 'dead', 'discarded')),
    attempts INTEGER NOT NULL DEFAULT 0,
    available_at REAL NOT NULL,
    lease_owner TEXT,
    lease_until REAL,
    last_error TEXT,
    received_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    done_at REAL,
    failing_since REAL,
    lost_leases INTEGER NOT NULL DEFAULT 0,
    gave_up INTEGER NOT NULL DEFAULT 0,
    discard_reason TEXT
);
INSERT INTO inbox_v3 (id, source, kind, delivery_key, payload, status, attempts, available_at, lease_owner,
                      lease_until, last_error, received_at, updated_at, done_at, failing_since, lost_leases, gave_up)
    SELECT id, source, kind, delivery_key, payload, status, attempts, available_at, lease_owner, lease_until,
           last_error, received_at, updated_at, done_at, failing_since, lost_leases, gave_up FROM inbox;
DROP TABLE inbox;
ALTER TABLE inbox_v3 RENAME TO inbox;
CREATE INDEX inbox_status_available ON inbox (status, available_at);
CREATE INDEX inbox_status_lease ON inbox (status, lease_until);
CREATE INDEX inbox_status_done ON inbox (status, done_at);
"""

# Why the engine abstained as a code and its values (rag.models.ABSTAIN_REASONS), so that the agents
# read it in their language; suggestions made before keep only the English ``reason``.
REASONS_V1 = """
ALTER TABLE suggestions ADD COLUMN reason_code TEXT NOT NULL DEFAULT '';
ALTER TABLE suggestions ADD COLUMN reason_params TEXT NOT NULL DEFAULT '{}';
"""

# Outages (issue 13): an incident opened by a burst of near-identical requests, its member requests, and
# whether the agents' note linking them was posted. Open until an admin closes it.
INCIDENTS_V1 = """
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    opened_at REAL NOT NULL,
    last_at REAL NOT NULL,
    representative TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    closed_at REAL,
    closed_by TEXT NOT NULL DEFAULT '',
    note_posted_at REAL
);
CREATE INDEX IF NOT EXISTS incidents_status ON incidents (status, opened_at);
CREATE TABLE IF NOT EXISTS incident_members (
    incident_id TEXT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    request_id TEXT NOT NULL,
    source TEXT NOT NULL,
    ticket_id TEXT NOT NULL,
    channel TEXT NOT NULL DEFAULT '',
    text TEXT NOT NULL DEFAULT '',
    at REAL NOT NULL,
    PRIMARY KEY (incident_id, request_id)
);
CREATE INDEX IF NOT EXISTS incident_members_request ON incident_members (request_id);
"""

# The admin console (issue 12): local accounts, run-time overrides of the policy, the audit log, and the
# sign-in throttle's counters (shared by every process).
ADMIN_V1 = """
CREATE TABLE IF NOT EXISTS admin_users (
    login TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'analyst')),
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS admin_overrides (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    changed_by TEXT NOT NULL,
    changed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    before TEXT,
    after TEXT,
    detail TEXT NOT NULL DEFAULT '',
    ip TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at);
CREATE INDEX IF NOT EXISTS audit_log_action ON audit_log (action, at);
CREATE TABLE IF NOT EXISTS signin_throttle (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
"""

# The self-service chat (issue 10): a conversation belongs to one owner (an opaque identity: a signed
# cookie's id, a trusted login); its id is unguessable (secrets.token_urlsafe). A turn is one message
# of the person and what we answered (an answer, a clarifying question, or "an agent will help"); an
# answer is also a suggestion with source "chat" (ticket_id "<conversation>:<n>"), so that a rating is an
# outcome event like a ticket's. The hand-off (a ticket opened on the person's behalf) is an inbox item;
# its state and the ticket's number are kept on the conversation.
CHAT_V1 = """
CREATE TABLE IF NOT EXISTS chat_conversations (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    language TEXT NOT NULL DEFAULT 'ru',
    title TEXT NOT NULL DEFAULT '',
    clarify_rounds INTEGER NOT NULL DEFAULT 0,
    handoff_state TEXT NOT NULL DEFAULT '' CHECK (handoff_state IN ('', 'pending', 'created', 'failed')),
    handoff_at REAL,
    handoff_error TEXT NOT NULL DEFAULT '',
    ticket_source TEXT NOT NULL DEFAULT '',
    ticket_id TEXT NOT NULL DEFAULT '',
    ticket_url TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS chat_conversations_owner ON chat_conversations (owner, updated_at);
CREATE TABLE IF NOT EXISTS chat_turns (
    conversation_id TEXT NOT NULL REFERENCES chat_conversations (id) ON DELETE CASCADE,
    n INTEGER NOT NULL,
    at REAL NOT NULL,
    message TEXT NOT NULL,
    query TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL DEFAULT 'new',
    method TEXT NOT NULL DEFAULT 'alone',
    reply TEXT NOT NULL CHECK (reply IN ('answer', 'clarify', 'handoff', 'incident')),
    answer_text TEXT NOT NULL DEFAULT '',
    answer_mode TEXT NOT NULL DEFAULT '',
    sources TEXT NOT NULL DEFAULT '[]',
    answer_ids TEXT NOT NULL DEFAULT '[]',
    entry_ids TEXT NOT NULL DEFAULT '[]',
    clarification TEXT,
    suggestion_id TEXT,
    rejected INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, n)
);
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration("state.inbox", 1, INBOX_V1),
    Migration("state.inbox", 2, INBOX_V2),
    Migration("records", 1, SUGGESTIONS_V1),
    Migration("mail", 1, MAIL_V1),
    Migration("mail", 2, MAIL_V2),
    Migration("records", 2, SUGGESTIONS_V2),
    Migration("state.inbox", 3, INBOX_V3),
    Migration("reasons", 1, REASONS_V1),
    Migration("incidents", 1, INCIDENTS_V1),
    Migration("admin", 1, ADMIN_V1),
    Migration("chat", 1, CHAT_V1),
)
