"""The admin console's logic, with no Flask: accounts and sign-in (local and directory, throttled, audited),
run-time steering (overrides laid over the settings, audited with before and after), the settings in
effect with every secret hidden, the last 24 hours in numbers. The pages and the CLI both call these."""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

from connectors.base import Connector
from dataset.importers import RowError, read_kb
from helpdesk_errors import HelpdeskError
from plugin.service import admin
from plugin.service import outages as outage_service
from plugin.service.directory import Directory, DirectoryError
from plugin.service.passwords import DEFAULT_HASHER, PasswordHasher, hash_password, verify_password
from plugin.service.policy import SHADOW_SOURCES, Policies
from plugin.service.throttle import Change, SignInThrottle, ThrottleState
from plugin.settings import Settings
from plugin.store import Store
from plugin.store.admin import ROLES, AuditRow, OverrideRow, ThrottleCounters
from plugin.store.suggestions import OutcomeEvent, Suggestion
from rag.engine import Engine
from rag.kbstore import LearnedPair
from rag.models import KBEntry

log = logging.getLogger(__name__)

Role = Literal["admin", "analyst"]
MAX_LOGIN_CHARS = 256
MAX_PASSWORD_CHARS = 1024
MIN_PASSWORD_CHARS = 10


# -- accounts -----------------------------------------------------------------------------------------
def normalize_login(login: str) -> str:
    return login.strip().casefold()


def create_user(store: Store, login: str, password: str, *, role: str = "analyst", by: str = "cli",
                hasher: PasswordHasher = DEFAULT_HASHER) -> bool:
    """Create a local account (or set a new password and role on an existing one); True when created.
    ValueError names what is wrong with the login, the role or the password."""
    name = normalize_login(login)
    if not name or len(name) > MAX_LOGIN_CHARS or any(not c.isprintable() for c in name):
        raise ValueError("login: 1 to 256 printable characters")
    if role not in ROLES:
        raise ValueError(f"role: one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD_CHARS or len(password) > MAX_PASSWORD_CHARS:
        raise ValueError(f"password: at least {MIN_PASSWORD_CHARS} characters")
    created = store.admin.put_user(name, hash_password(password, hasher=hasher), role)
    store.admin.audit(actor=by, action="user_created" if created else "user_updated", target=name,
                      after={"role": role})
    return created


class DatabaseThrottleStore:
    """:class:`plugin.service.throttle.ThrottleStore` over the state file: every process counts together."""

    def __init__(self, counters: ThrottleCounters) -> None:
        self.counters = counters

    def get(self, key: str) -> ThrottleState | None:
        text = self.counters.get(key)
        return ThrottleState.model_validate_json(text) if text else None

    def update(self, key: str, change: Change) -> ThrottleState | None:
        result: list[ThrottleState | None] = [None]

        def apply(text: str | None) -> tuple[str, float] | None:
            new = change(ThrottleState.model_validate_json(text) if text else None)
            result[0] = new
            return None if new is None else (new.model_dump_json(), new.expires_at)

        self.counters.update(key, apply)
        return result[0]

    def purge(self, now: float) -> int:
        return self.counters.purge(now)


@dataclass(frozen=True)
class SignIn:
    ok: bool
    login: str = ""
    role: Role | None = None
    #: "local" or "ldap" when ok.
    via: str = ""
    #: Why not: "invalid" (wrong login or password, or no role), "locked", "directory_unavailable", "bad_input".
    error: str = ""
    retry_after_s: float = 0.0


class Accounts:
    """Signing in: the throttle first, then a local account, else the directory (when configured)."""

    def __init__(self, settings: Settings, store: Store, *, clock: Callable[[], float] = time.time,
                 hasher: PasswordHasher = DEFAULT_HASHER, directory: Directory | None = None) -> None:
        self.settings = settings
        self.store = store
        self.hasher = hasher
        self.throttle = SignInThrottle(DatabaseThrottleStore(store.throttle), settings.admin.throttle, clock=clock)
        if directory is None and settings.admin.ldap.enabled:
            directory = Directory(settings.admin.ldap)
        self.directory = directory

    def sign_in(self, login: str, password: str, *, ip: str) -> SignIn:
        name = normalize_login(login)
        shown = name[:64]
        if not name or len(name) > MAX_LOGIN_CHARS or not password or len(password) > MAX_PASSWORD_CHARS:
            return SignIn(ok=False, error="bad_input")
        decision = self.throttle.check(name, ip)
        if not decision.allowed:
            self.store.admin.audit(actor=shown, action="sign_in_locked", detail=f"locked ({decision.locked})", ip=ip)
            return SignIn(ok=False, error="locked", retry_after_s=decision.retry_after_s)
        result = self._check(name, password)
        if result.ok:
            self.throttle.succeeded(name, ip)
            self.store.admin.audit(actor=name, action="sign_in", detail=f"via {result.via}, role {result.role}", ip=ip)
            return result
        if result.error == "directory_unavailable":
            self.store.admin.audit(actor=shown, action="sign_in_failed", detail="directory unavailable", ip=ip)
            return result
        after = self.throttle.failed(name, ip)
        self.store.admin.audit(actor=shown, action="sign_in_failed", detail=result.error, ip=ip)
        if not after.allowed:
            return SignIn(ok=False, error="locked", retry_after_s=after.retry_after_s)
        return result

    def _check(self, name: str, password: str) -> SignIn:
        user = self.store.admin.user(name)
        if user is not None and not user.disabled:
            verdict = verify_password(user.password_hash, password, hasher=self.hasher)
            if not verdict.ok:
                return SignIn(ok=False, error="invalid")
            if verdict.needs_rehash:
                self.store.admin.set_password_hash(name, hash_password(password, hasher=self.hasher))
            role: Role = "admin" if user.role == "admin" else "analyst"
            return SignIn(ok=True, login=name, role=role, via="local")
        if self.directory is not None:
            try:
                answer = self.directory.authenticate(name, password)
            except DirectoryError as e:
                log.warning("admin_sign_in_directory_unavailable: %s", e)
                return SignIn(ok=False, error="directory_unavailable")
            if answer.ok and answer.role is not None:
                return SignIn(ok=True, login=name, role=answer.role, via="ldap")
            log.info("admin_sign_in_refused: %s", answer.reason)
            return SignIn(ok=False, error="invalid")
        verify_password(None, password, hasher=self.hasher)  # the time of a real check
        return SignIn(ok=False, error="invalid")


def session_role(store: Store, login: str, *, via: str, role: str | None, started: float) -> Role | None:
    """The role a signed-in session has now, or None when it must end. A local account is read again at
    each request: removed, disabled, or given a new password or role since the session began (``admin
    create-user`` again) ends the session. A directory account keeps the role it signed in with until the
    session times out (the directory is asked only with the password)."""
    if via != "local":
        return "admin" if role == "admin" else ("analyst" if role == "analyst" else None)
    user = store.admin.user(login)
    if user is None or user.disabled or user.updated_at > started:
        return None
    return "admin" if user.role == "admin" else "analyst"


# -- steering -----------------------------------------------------------------------------------------
#: The keys an admin may override at run time.
STEERING_KEYS = ("shadow_mode", *(f"shadow.{s}" for s in SHADOW_SOURCES), "threshold", "category_thresholds",
                 "disabled_categories", "links.lifetime_days")
#: Overrides set by their own pages (the knowledge base), shown on the steering page too.
OTHER_OVERRIDES = ("disabled_entries",)


def override_values(store: Store) -> dict[str, Any]:
    return {k: row.value for k, row in store.admin.overrides().items()}


def policies(settings: Settings, store: Store) -> Policies:
    """The policy in effect: the settings with the stored overrides read at each request."""
    return Policies(settings, overrides=lambda: override_values(store))


def link_lifetime_s(settings: Settings, store: Store) -> Callable[[], float]:
    def lifetime() -> float:
        row = store.admin.overrides().get("links.lifetime_days")
        days = float(row.value) if row is not None else settings.links.lifetime_days
        return days * 86_400

    return lifetime


def file_values(settings: Settings) -> dict[str, Any]:
    """What the settings file (and the environment) say for each steering key."""
    d = settings.decision
    out: dict[str, Any] = {
        "shadow_mode": settings.pipeline.shadow_mode,
        "threshold": d.threshold,
        "category_thresholds": dict(d.category_thresholds),
        "disabled_categories": sorted(d.disabled_categories),
        "links.lifetime_days": settings.links.lifetime_days,
    }
    for source in SHADOW_SOURCES:
        out[f"shadow.{source}"] = getattr(settings, source).shadow_mode
    return out


@dataclass(frozen=True)
class CategoryRow:
    name: str
    enabled: bool
    #: The threshold in effect for it, and whether it is the category's own (file or override).
    threshold: float
    own_threshold: bool
    file_enabled: bool
    file_threshold: float | None


@dataclass(frozen=True)
class Steering:
    file: dict[str, Any]
    overrides: dict[str, OverrideRow]
    effective: dict[str, Any]
    categories: list[CategoryRow]


def steering(settings: Settings, store: Store, categories: list[str], *, engine_default: float = 0.5) -> Steering:
    """Each steering key's file value, override (who, when) and value in effect; one row per category.
    ``engine_default``: the engine's calibrated threshold, in effect where neither names one."""
    file = file_values(settings)
    rows = store.admin.overrides()
    effective = {**file, **{k: r.value for k, r in rows.items()}}
    if "category_thresholds" in rows:
        effective["category_thresholds"] = {**file["category_thresholds"], **rows["category_thresholds"].value}
    current = policies(settings, store).current()
    for source in SHADOW_SOURCES:  # None in the file: follows the global switch
        effective[f"shadow.{source}"] = current.shadow_mode_for(source)
    policy = current.decision
    if effective.get("threshold") is None:  # automatic: the engine's calibrated default
        effective["threshold"] = round(engine_default, 3)
    names = sorted({*categories, *file["category_thresholds"], *file["disabled_categories"],
                    *effective["category_thresholds"], *effective["disabled_categories"]})
    cats = [
        CategoryRow(
            name=n, enabled=not policy.is_disabled(n), threshold=policy.threshold_for(n, default=engine_default),
            own_threshold=n in policy.category_thresholds, file_enabled=n not in file["disabled_categories"],
            file_threshold=file["category_thresholds"].get(n),
        )
        for n in names
    ]
    return Steering(file=file, overrides=rows, effective=effective, categories=cats)


def _threshold(raw: Any, field: str) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{field}: a number from 0 to 1") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{field}: a number from 0 to 1")
    return value


def set_override(store: Store, settings: Settings, key: str, value: Any, *, by: str, ip: str = "") -> Any:
    """Validate and store one override (``value`` None removes it: the file's value applies again),
    audited with before and after. ValueError names the field."""
    if key not in STEERING_KEYS:
        raise ValueError(f"key: one of {', '.join(STEERING_KEYS)}")
    if value is not None:
        if key == "shadow_mode" or key.startswith("shadow."):
            if not isinstance(value, bool):
                raise ValueError(f"{key}: on or off")
        elif key == "threshold":
            value = _threshold(value, key)
        elif key == "links.lifetime_days":
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{key}: a number of days from 0.01 to 365") from None
            if not math.isfinite(value) or not 0.01 <= value <= 365:
                raise ValueError(f"{key}: a number of days from 0.01 to 365")
        elif key == "category_thresholds":
            if not isinstance(value, Mapping):
                raise ValueError(f"{key}: category -> threshold")
            value = {str(k): _threshold(v, f"threshold of {k}") for k, v in value.items()}
        elif key == "disabled_categories":
            if not isinstance(value, list | tuple | set | frozenset):
                raise ValueError(f"{key}: a list of categories")
            value = sorted({str(v) for v in value})
    return store.admin.set_override(key, value, by=by, audit={"ip": ip})


def switch_category(store: Store, settings: Settings, category: str, *, enabled: bool, by: str, ip: str = "") -> None:
    """Switch a first-level category on or off (stored as the whole ``disabled_categories`` override)."""
    current = set(policies(settings, store).current().decision.disabled_categories)
    new = (current - {category}) if enabled else (current | {category})
    if new == set(settings.decision.disabled_categories):
        set_override(store, settings, "disabled_categories", None, by=by, ip=ip)
    else:
        set_override(store, settings, "disabled_categories", sorted(new), by=by, ip=ip)


def set_category_threshold(store: Store, settings: Settings, category: str, threshold: Any | None, *,
                           by: str, ip: str = "") -> None:
    """A category's own threshold (None: back to the file's, or the global one)."""
    row = store.admin.overrides().get("category_thresholds")
    current = dict(row.value) if row is not None else {}
    if threshold is None or threshold == "":
        current.pop(category, None)
    else:
        current[category] = _threshold(threshold, f"threshold of {category}")
    set_override(store, settings, "category_thresholds", current or None, by=by, ip=ip)


# -- settings in effect -------------------------------------------------------------------------------
HIDDEN = "••••••"


def settings_in_effect(settings: Settings) -> list[tuple[str, str]]:
    """Every setting as ``(dotted.key, text)``; a secret shows only whether it is set."""
    out: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, SecretStr):
            out.append((prefix, HIDDEN if value.get_secret_value() else "(not set)"))
        elif hasattr(value, "model_fields"):
            for name in type(value).model_fields:
                walk(f"{prefix}.{name}" if prefix else name, getattr(value, name))
        elif isinstance(value, Mapping):
            if not value:
                out.append((prefix, "{}"))
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
        elif isinstance(value, list | tuple | set | frozenset):
            items = list(value)
            if any(isinstance(v, SecretStr) for v in items):
                out.append((prefix, f"{len(items)} × {HIDDEN}"))
            else:
                out.append((prefix, ", ".join(str(v) for v in items) or "[]"))
        else:
            out.append((prefix, str(value)))

    walk("", settings)
    return out


# -- overview / audit ---------------------------------------------------------------------------------
def last_24h(store: Store) -> dict[str, int]:
    return store.suggestions.window_counts(store.clock() - 86_400)


def audit_entries(store: Store, *, actor: str | None = None, action: str | None = None, text: str | None = None,
                  limit: int = 200) -> list[AuditRow]:
    return store.admin.audit_entries(actor=actor or None, action=action or None, text=text or None, limit=limit)


def audit_actions(store: Store) -> list[str]:
    return store.admin.audit_actions()


def audit(store: Store, *, actor: str, action: str, target: str = "", detail: str = "", ip: str = "",
          before: Any = None, after: Any = None) -> None:
    store.admin.audit(actor=actor, action=action, target=target, detail=detail, ip=ip, before=before, after=after)


# -- the work queue, audited --------------------------------------------------------------------------
def retry_item(store: Store, item_id: int, *, by: str, ip: str = "") -> bool:
    ok = admin.retry_item(store, item_id)
    if ok:
        store.admin.audit(actor=by, action="queue_retry", target=f"#{item_id}", ip=ip)
    return ok


def retry_dead(store: Store, *, kind: str | None, by: str, ip: str = "") -> int:
    n = admin.retry_dead(store, kind=kind or None)
    store.admin.audit(actor=by, action="queue_retry_all", target=kind or "(every kind)", detail=f"{n} items", ip=ip)
    return n


def discard_item(store: Store, item_id: int, *, reason: str, by: str, ip: str = "") -> bool:
    ok = admin.discard_item(store, item_id, reason=reason)
    if ok:
        store.admin.audit(actor=by, action="queue_discard", target=f"#{item_id}", detail=reason.strip(), ip=ip)
    return ok


# -- outage incidents ---------------------------------------------------------------------------------
def close_incident(store: Store, watch: outage_service.OutageWatch | None, incident_id: str, *, by: str,
                   ip: str = "") -> bool:
    """Close an open incident (the running watch forgets it at once), audited; False when not open."""
    closed = watch.close(incident_id, by=by) if watch is not None else outage_service.close(store, incident_id, by=by)
    if closed:
        store.admin.audit(actor=by, action="incident_close", target=incident_id, ip=ip)
    return closed


def set_incident_message(store: Store, incident_id: str, message: str, *, by: str, ip: str = "") -> bool:
    """Reword what users are told about an incident ("" = the default wording), audited with before/after."""
    row = store.incidents.get(incident_id)
    if row is None:
        return False
    text = " ".join(message.split())[:1000]
    if not store.incidents.set_message(incident_id, text):
        return False
    store.admin.audit(actor=by, action="incident_message", target=incident_id, before=row.message, after=text, ip=ip)
    return True


# -- tickets, mail and chats --------------------------------------------------------------------------
@dataclass(frozen=True)
class TicketRecord:
    suggestion: Suggestion
    events: list[OutcomeEvent]
    #: The ticket in its helpdesk (None for the mailbox and the chat).
    link: str | None


def ticket_link(connectors: Mapping[str, Connector], source: str, ticket_id: str) -> str | None:
    connector = connectors.get(source)
    if connector is None:
        return None
    url = getattr(connector, "ticket_url", None)
    if callable(url):
        return str(url(ticket_id))
    base = getattr(connector, "url", None)
    if source == "redmine" and isinstance(base, str):
        return f"{base.rstrip('/')}/issues/{ticket_id}"
    return None


def search_tickets(store: Store, text: str = "", *, source: str | None = None, limit: int = 100) -> list[Suggestion]:
    return store.suggestions.search(text.strip()[:256], source=source or None, limit=limit)


def ticket_sources(store: Store) -> list[str]:
    return store.suggestions.sources()


def ticket_record(store: Store, connectors: Mapping[str, Connector], suggestion_id: str) -> TicketRecord | None:
    s = store.suggestions.get(suggestion_id)
    if s is None:
        return None
    return TicketRecord(suggestion=s, events=store.suggestions.events(s.id),
                        link=ticket_link(connectors, s.source, s.ticket_id))


# -- knowledge base -----------------------------------------------------------------------------------
def disabled_entries(store: Store) -> set[str]:
    row = store.admin.overrides().get("disabled_entries")
    return set(row.value) if row is not None else set()


def kb_search(engine: Engine, text: str = "", *, limit: int = 100) -> list[KBEntry]:
    """Entries whose title, question, answer, categories or id contain ``text`` (case-folded)."""
    needle = text.strip().casefold()[:256]
    out: list[KBEntry] = []
    for e in engine.store.entries():
        hay = " ".join((e.id, e.title, e.question, e.answer, *e.categories)).casefold()
        if needle in hay:
            out.append(e)
            if len(out) >= limit:
                break
    return out


@dataclass(frozen=True)
class EntryView:
    entry: KBEntry
    enabled: bool
    counts: dict[str, int]


def kb_entry(engine: Engine, store: Store, entry_id: str) -> EntryView | None:
    entry = next((e for e in engine.store.entries() if e.id == entry_id), None)
    if entry is None:
        return None
    return EntryView(entry=entry, enabled=entry_id not in disabled_entries(store),
                     counts=store.suggestions.entry_counts(entry_id))


def set_entry_enabled(engine: Engine, store: Store, settings: Settings, entry_id: str, *, enabled: bool, by: str,
                      ip: str = "") -> None:
    """Switch an entry off (never suggested) or back on; stored as the ``disabled_entries`` override."""
    if kb_entry(engine, store, entry_id) is None:
        raise ValueError(f"entry: no knowledge-base entry {entry_id!r}")
    current = disabled_entries(store)
    new = (current - {entry_id}) if enabled else (current | {entry_id})
    if new != current:
        store.admin.set_override("disabled_entries", sorted(new) or None, by=by, audit={"ip": ip})


def most_rejected(store: Store, limit: int = 20) -> list[tuple[str, str, int, int]]:
    return store.suggestions.most_rejected(limit)


def learned_pairs(engine: Engine, *, limit: int = 500) -> list[LearnedPair]:
    """The newest first."""
    return list(reversed(engine.store.learned()))[:limit]


def forget_learned(engine: Engine, store: Store, pair_id: int, *, by: str, ip: str = "") -> bool:
    pair = next((p for p in engine.store.learned() if p.id == pair_id), None)
    if pair is None or engine.forget_learned([pair_id]) != 1:
        return False
    store.admin.audit(actor=by, action="learned_deleted", target=f"#{pair_id} -> {pair.entry_id}",
                      before={"polarity": pair.polarity, "origin": pair.origin}, ip=ip)
    return True


@dataclass
class ImportJob:
    """One knowledge-base import started from the console, run in a thread; the page polls it."""

    id: str
    file_name: str
    by: str
    started_at: float
    state: Literal["running", "done", "failed"] = "running"
    #: "reading", "indexing", "done".
    phase: str = "reading"
    rows_read: int = 0
    entries: int = 0
    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[RowError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str = ""
    finished_at: float | None = None


class ImportJobs:
    """Imports started from the console (one process: the jobs live in memory, the result in the audit log)."""

    def __init__(self, engine: Engine, store: Store, *, keep: int = 50) -> None:
        self.engine = engine
        self.store = store
        self.keep = keep
        self._jobs: dict[str, ImportJob] = {}
        self._lock = threading.Lock()

    def start(self, path: Path, file_name: str, *, by: str, ip: str = "") -> ImportJob:
        job = ImportJob(id=secrets.token_hex(8), file_name=file_name[:200], by=by, started_at=time.time())
        with self._lock:
            self._jobs[job.id] = job
            for old in list(self._jobs)[: max(0, len(self._jobs) - self.keep)]:
                del self._jobs[old]
        threading.Thread(target=self._run, args=(job, path, ip), name=f"kb-import-{job.id}", daemon=True).start()
        return job

    def get(self, job_id: str) -> ImportJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def _run(self, job: ImportJob, path: Path, ip: str) -> None:
        try:
            result = read_kb(path, source=Path(job.file_name).stem or None)
            job.rows_read, job.entries = result.rows_read, len(result.entries)
            job.rejected, job.warnings = list(result.rejected), list(result.warnings)
            job.phase = "indexing"
            report = self.engine.import_entries(result.entries)
            job.imported, job.updated, job.unchanged = report.imported, report.updated, report.unchanged
            job.phase, job.state = "done", "done"
        except (HelpdeskError, ValueError, OSError) as e:
            job.state, job.error = "failed", str(e)
        except Exception:
            log.exception("kb_import_failed")
            job.state, job.error = "failed", "unexpected error; see the service log"
        finally:
            job.finished_at = time.time()
            path.unlink(missing_ok=True)
        self.store.admin.audit(
            actor=job.by, action="kb_import", target=job.file_name, ip=ip,
            detail=(f"{job.imported} new, {job.updated} updated, {job.unchanged} unchanged, "
                    f"{len(job.rejected)} rows rejected") if job.state == "done" else f"failed: {job.error}",
        )
