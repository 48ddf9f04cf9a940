"""The inbox: accepted events that the worker takes with a lease, and the pollers' watermarks.

The inbox works at least once: an item is taken with a lease (:meth:`Inbox.claim`); when the worker
holding it dies, the lease runs out and another worker takes it again. Handlers must therefore be
idempotent. Error texts stored with an item are the callers' messages, clipped; never payloads.

Done items are purged after a while (:meth:`Inbox.purge_done`), but their delivery keys are kept in a
compact table (key and time only) for a longer window, so that a helpdesk replaying an old delivery is
still recognised as a duplicate.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from plugin.store.db import Database, clip_error

log = logging.getLogger(__name__)

InboxStatus = Literal["pending", "leased", "done", "dead", "discarded"]
INBOX_STATUSES: tuple[InboxStatus, ...] = ("pending", "leased", "done", "dead", "discarded")


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
    #: Why an admin discarded it (status ``discarded``).
    discard_reason: str | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> InboxItem:
        return cls(
            id=row["id"], source=row["source"], kind=row["kind"], delivery_key=row["delivery_key"],
            payload=json.loads(row["payload"]), status=row["status"], attempts=row["attempts"],
            available_at=row["available_at"], lease_owner=row["lease_owner"], lease_until=row["lease_until"],
            last_error=row["last_error"], received_at=row["received_at"], updated_at=row["updated_at"],
            done_at=row["done_at"], failing_since=row["failing_since"], lost_leases=row["lost_leases"],
            gave_up=bool(row["gave_up"]), discard_reason=row["discard_reason"],
        )


class Inbox:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- items ---------------------------------------------------------------------------------------
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
        now = self.db.clock()
        with self.db.transaction() as db:
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
        now = self.db.clock()
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
        with self.db.transaction() as db:
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
        with self.db.transaction() as db:
            cur = db.execute(
                f"UPDATE inbox SET {assignments}, updated_at = ?"  # noqa: S608 - fixed column lists
                " WHERE id = ? AND status = 'leased' AND lease_owner = ?",
                (*args, self.db.clock(), item_id, owner),
            )
            return cur.rowcount == 1

    def complete(self, item_id: int, owner: str) -> bool:
        """Mark done; False when ``owner`` no longer holds the item (another worker took it)."""
        return self._owned_update(
            item_id, owner, "status = 'done', done_at = ?, lease_owner = NULL, lease_until = NULL", (self.db.clock(),)
        )

    def retry_later(self, item_id: int, owner: str, error: str, delay_s: float) -> bool:
        """Give the item back, available again in ``delay_s`` seconds; False when not held.

        The first failure's time is kept (``failing_since``): the worker gives up by time, not count.
        """
        now = self.db.clock()
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
        return self._owned_update(item_id, owner, "lease_until = ?", (self.db.clock() + lease_s,))

    def requeue(self, item_id: int) -> bool:
        """A dead item back to pending, attempts reset (the admin's "retry"); False if not dead."""
        now = self.db.clock()
        with self.db.transaction() as db:
            cur = db.execute(
                "UPDATE inbox SET status = 'pending', attempts = 0, available_at = ?, updated_at = ?,"
                " failing_since = NULL, lost_leases = 0, gave_up = 0 WHERE id = ? AND status = 'dead'",
                (now, now, item_id),
            )
            return cur.rowcount == 1

    def requeue_dead(self, *, kind: str | None = None) -> int:
        """Every dead item (of ``kind``) back to pending, as :meth:`requeue` does one; how many."""
        now = self.db.clock()
        with self.db.transaction() as db:
            cur = db.execute(
                "UPDATE inbox SET status = 'pending', attempts = 0, available_at = ?, updated_at = ?,"
                " failing_since = NULL, lost_leases = 0, gave_up = 0 WHERE status = 'dead' AND (? IS NULL OR kind = ?)",
                (now, now, kind, kind),
            )
            return cur.rowcount

    def discard(self, item_id: int, *, reason: str) -> bool:
        """A pending or dead item set aside for good, kept with ``reason`` (never purged); False when
        it is leased (a worker holds it), done, discarded already, or unknown."""
        with self.db.transaction() as db:
            cur = db.execute(
                "UPDATE inbox SET status = 'discarded', discard_reason = ?, updated_at = ?, lease_owner = NULL,"
                " lease_until = NULL WHERE id = ? AND status IN ('pending', 'dead')",
                (clip_error(reason), self.db.clock(), item_id),
            )
            return cur.rowcount == 1

    def get(self, item_id: int) -> InboxItem | None:
        row = self.db.read().execute("SELECT * FROM inbox WHERE id = ?", (item_id,)).fetchone()
        return InboxItem.from_row(row) if row else None

    def items(self, status: str | None = None, limit: int = 50) -> list[InboxItem]:
        """The newest items first, optionally of one status (ValueError for an unknown status)."""
        if status is not None and status not in INBOX_STATUSES:
            raise ValueError(f"unknown inbox status {status!r}; expected one of {', '.join(INBOX_STATUSES)}")
        if status is None:
            rows = self.db.read().execute("SELECT * FROM inbox ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        else:
            rows = self.db.read().execute(
                "SELECT * FROM inbox WHERE status = ? ORDER BY id DESC LIMIT ?", (status, limit)
            ).fetchall()
        return [InboxItem.from_row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Items per status; every status present (0 when none)."""
        out: dict[str, int] = dict.fromkeys(INBOX_STATUSES, 0)
        for row in self.db.read().execute("SELECT status, COUNT(*) AS n FROM inbox GROUP BY status"):
            out[row["status"]] = row["n"]
        return out

    def purge_done(self, older_than_s: float) -> int:
        """Delete items done more than ``older_than_s`` seconds ago; how many were deleted.

        Their delivery keys move to the compact ``delivery_keys`` table (key and reception time), so
        a replay arriving after the purge is still refused as a duplicate; :meth:`purge_delivery_keys`
        forgets them after a longer window. Pending, leased and dead items are never purged.
        """
        cutoff = self.db.clock() - older_than_s
        with self.db.transaction() as db:
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
        with self.db.transaction() as db:
            cur = db.execute("DELETE FROM delivery_keys WHERE received_at < ?", (self.db.clock() - older_than_s,))
            return cur.rowcount

    # -- watermarks ----------------------------------------------------------------------------------
    def get_watermark(self, name: str) -> str | None:
        row = self.db.read().execute("SELECT value FROM watermarks WHERE name = ?", (name,)).fetchone()
        return row["value"] if row else None

    def set_watermark(self, name: str, value: str) -> None:
        with self.db.transaction() as db:
            db.execute(
                "INSERT INTO watermarks (name, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (name, value, self.db.clock()),
            )
