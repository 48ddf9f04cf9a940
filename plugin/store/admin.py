"""The admin console's records: local accounts, run-time overrides of the policy, the audit log, and the
sign-in throttle's counters (in the state file, so that every process sees the same ones)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from plugin.store.db import Database

ROLES = ("admin", "analyst")


@dataclass(frozen=True, slots=True)
class UserRow:
    login: str
    password_hash: str
    role: str
    created_at: float
    updated_at: float
    disabled: bool


@dataclass(frozen=True, slots=True)
class OverrideRow:
    key: str
    value: Any
    changed_by: str
    changed_at: float


@dataclass(frozen=True, slots=True)
class AuditRow:
    id: int
    at: float
    actor: str
    action: str
    target: str
    before: Any
    after: Any
    detail: str
    ip: str


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


class AdminRecords:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- accounts ------------------------------------------------------------------------------------
    def user(self, login: str) -> UserRow | None:
        row = self.db.read().execute("SELECT * FROM admin_users WHERE login = ?", (login,)).fetchone()
        if row is None:
            return None
        return UserRow(row["login"], row["password_hash"], row["role"], row["created_at"], row["updated_at"],
                       bool(row["disabled"]))

    def users(self) -> list[UserRow]:
        rows = self.db.read().execute("SELECT * FROM admin_users ORDER BY login").fetchall()
        return [UserRow(r["login"], r["password_hash"], r["role"], r["created_at"], r["updated_at"],
                        bool(r["disabled"])) for r in rows]

    def put_user(self, login: str, password_hash: str, role: str) -> bool:
        """Create the account or replace its password and role; True when it was created."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
        now = self.db.clock()
        with self.db.transaction() as db:
            existed = db.execute("SELECT 1 FROM admin_users WHERE login = ?", (login,)).fetchone() is not None
            db.execute(
                "INSERT INTO admin_users (login, password_hash, role, created_at, updated_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (login) DO UPDATE SET password_hash = excluded.password_hash, role = excluded.role,"
                " updated_at = excluded.updated_at, disabled = 0",
                (login, password_hash, role, now, now),
            )
        return not existed

    def set_password_hash(self, login: str, password_hash: str) -> None:
        with self.db.transaction() as db:
            db.execute("UPDATE admin_users SET password_hash = ?, updated_at = ? WHERE login = ?",
                       (password_hash, self.db.clock(), login))

    # -- overrides -----------------------------------------------------------------------------------
    def overrides(self) -> dict[str, OverrideRow]:
        rows = self.db.read().execute("SELECT * FROM admin_overrides ORDER BY key").fetchall()
        return {r["key"]: OverrideRow(r["key"], json.loads(r["value"]), r["changed_by"], r["changed_at"]) for r in rows}

    def set_override(self, key: str, value: Any, *, by: str, audit: Mapping[str, Any]) -> Any:
        """Store (or, with ``value`` None, remove) one override and its audit entry in one transaction;
        the value it replaced (None when there was none)."""
        now = self.db.clock()
        with self.db.transaction() as db:
            row = db.execute("SELECT value FROM admin_overrides WHERE key = ?", (key,)).fetchone()
            before = json.loads(row["value"]) if row else None
            if value is None:
                db.execute("DELETE FROM admin_overrides WHERE key = ?", (key,))
            else:
                db.execute(
                    "INSERT INTO admin_overrides (key, value, changed_by, changed_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value, changed_by = excluded.changed_by,"
                    " changed_at = excluded.changed_at",
                    (key, _dump(value), by, now),
                )
            self._audit(db, now, actor=by, action="override", target=key, before=before, after=value,
                        detail=str(audit.get("detail", "")), ip=str(audit.get("ip", "")))
        return before

    # -- audit ---------------------------------------------------------------------------------------
    def audit(self, *, actor: str, action: str, target: str = "", before: Any = None, after: Any = None,
              detail: str = "", ip: str = "") -> None:
        with self.db.transaction() as db:
            self._audit(db, self.db.clock(), actor=actor, action=action, target=target, before=before,
                        after=after, detail=detail, ip=ip)

    @staticmethod
    def _audit(db: Any, now: float, *, actor: str, action: str, target: str, before: Any, after: Any,
               detail: str, ip: str) -> None:
        db.execute(
            "INSERT INTO audit_log (at, actor, action, target, before, after, detail, ip)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (now, actor[:256], action, target[:256], _dump(before), _dump(after), detail[:2000], ip[:64]),
        )

    def audit_entries(self, *, actor: str | None = None, action: str | None = None, text: str | None = None,
                      limit: int = 200) -> list[AuditRow]:
        """The newest first, filtered by actor, action (exact) and ``text`` (in target or detail)."""
        sql = "SELECT * FROM audit_log WHERE 1 = 1"
        args: list[Any] = []
        if actor:
            sql += " AND actor = ?"
            args.append(actor)
        if action:
            sql += " AND action = ?"
            args.append(action)
        if text:
            sql += " AND (instr(casefold(target), casefold(?)) > 0 OR instr(casefold(detail), casefold(?)) > 0)"
            args += [text, text]
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        rows = self.db.read().execute(sql, args).fetchall()
        return [AuditRow(r["id"], r["at"], r["actor"], r["action"], r["target"], _load(r["before"]),
                         _load(r["after"]), r["detail"], r["ip"]) for r in rows]

    def audit_actions(self) -> list[str]:
        return [r[0] for r in self.db.read().execute("SELECT DISTINCT action FROM audit_log ORDER BY action")]


class ThrottleCounters:
    """The sign-in throttle's counters as JSON text per key (the service layer gives them their shape:
    :class:`plugin.service.console.DatabaseThrottleStore`)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, key: str) -> str | None:
        row = self.db.read().execute("SELECT state FROM signin_throttle WHERE key = ?", (key,)).fetchone()
        return str(row["state"]) if row else None

    def update(self, key: str, change: Callable[[str | None], tuple[str, float] | None]) -> None:
        """Replace the key's state by ``change(state)`` (text, expires_at) in one transaction; None deletes it."""
        with self.db.transaction() as db:
            row = db.execute("SELECT state FROM signin_throttle WHERE key = ?", (key,)).fetchone()
            new = change(str(row["state"]) if row else None)
            if new is None:
                db.execute("DELETE FROM signin_throttle WHERE key = ?", (key,))
            else:
                db.execute(
                    "INSERT INTO signin_throttle (key, state, expires_at) VALUES (?, ?, ?) ON CONFLICT (key)"
                    " DO UPDATE SET state = excluded.state, expires_at = excluded.expires_at",
                    (key, new[0], new[1]),
                )

    def purge(self, now: float) -> int:
        with self.db.transaction() as db:
            return int(db.execute("DELETE FROM signin_throttle WHERE expires_at <= ?", (now,)).rowcount)
