"""What an admin does, as functions the CLI and the console both call: the health report, ``check``,
and the work queue (list, retry, discard)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connectors.base import Checkable, CheckResult, Connector
from helpdesk_errors import HelpdeskError
from plugin.i18n import N_, words
from plugin.service.mail import mailbox_check
from plugin.service.registry import FACTORIES, enabled_names
from plugin.settings import Settings
from plugin.store import Store
from plugin.store.inbox import InboxItem
from rag.engine import Engine


# -- health -------------------------------------------------------------------------------------------
def connections(store: Store, names: list[str]) -> dict[str, dict[str, Any]]:
    """Per enabled helpdesk (and the mailbox), whether the worker can reach it: ``ok``, or
    ``unreachable`` since the first transient failure of the current streak (store clock), cleared by
    the next success. Recorded in the state file, so any process sees it."""
    known = store.health.connection_health()
    now = store.clock()
    out: dict[str, dict[str, Any]] = {}
    # Only what is enabled now: a connector switched off since keeps no stale "unreachable".
    for name in sorted(names):
        h = known.get(name)
        if h is None or h.failing_since is None:
            out[name] = {"state": "ok"}
            continue
        out[name] = {
            "state": "unreachable",
            "since": _iso(h.failing_since),
            "for_s": round(now - h.failing_since),
            "failures": h.failures,
            "last_failure": _iso(h.last_failure_at) if h.last_failure_at is not None else None,
            "last_error": h.last_error,
        }
    return out


def health(
    *,
    settings: Settings,
    engine: Engine,
    llm_fallback_reason: str | None,
    store: Store,
    connectors: Mapping[str, Connector],
    mailbox: bool,
    worker_running: bool,
) -> dict[str, Any]:
    """What /healthz and `helpdesk-assist status` show: models, fallbacks, index size, queue, and
    which helpdesks the worker cannot reach (since when)."""
    stats = engine.stats()
    emb = engine.embedding
    conns = connections(store, [*connectors, *(["email"] if mailbox else [])])
    unreachable = any(c["state"] != "ok" for c in conns.values())
    degraded = bool(emb.fallback_reason or llm_fallback_reason or unreachable)
    return {
        "status": "degraded" if degraded else "ok",
        "models": {
            "embedding": {
                "configured": emb.requested,
                "in_use": engine.embedder.name,
                "fallback": emb.fallback_reason is not None,
                "fallback_reason": emb.fallback_reason,
            },
            "llm": {
                "configured": settings.llm.backend
                + ("" if settings.llm.backend == "none" else f":{settings.llm.model}"),
                "in_use": getattr(engine.llm, "name", None),
                "mode": "llm" if engine.llm is not None else "extractive only",
                "fallback_reason": llm_fallback_reason,
            },
        },
        "index": {
            "entries": stats["entries"],
            "distinct_answers": stats["distinct_answers"],
            "vectors": stats["vectors"],
            "learned": stats["learned"],
            "built_with": stats["index_built_with"],
            "calibration": stats["calibration"],
        },
        "connectors": sorted(connectors),
        "connections": conns,
        "queue": store.inbox.counts(),
        "worker": "running" if worker_running else "not in this process",
    }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# -- check --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckLine:
    """One line of ``helpdesk-assist check``: what was tested, whether it is fine, and in plain words
    what was confirmed or what to fix (in the language :func:`check` was asked for)."""

    label: str
    ok: bool
    detail: str


def check(settings: Settings, *, language: str | None = None) -> list[CheckLine]:
    """Test every enabled connector and the mailbox: reachability, credentials, rights, folders,
    webhook secrets. Builds its own connectors from the settings (no models are loaded). The words are
    in ``language`` (default: ``settings.admin_language``); a setting's or a helpdesk's name, and a
    server's own error text, are shown as they are."""
    _ = words(language or settings.admin_language)
    results: list[tuple[str, CheckResult]] = []
    names = enabled_names(settings)
    if not names and not settings.email.enabled:
        results.append(("", CheckResult.of(
            "connectors", False,
            N_("no connector is enabled: set glpi.enabled, redmine.enabled or email.enabled"),
        )))
    key = settings.secret_key.get_secret_value()
    results.append(("", CheckResult.of(
        "secret_key", len(key) >= 16,
        N_("set (signs the confirmation links)") if len(key) >= 16
        else N_("missing or shorter than 16 characters: set HELPDESK_ASSIST_SECRET_KEY"),
    )))
    url = settings.links.public_url
    results.append(("", CheckResult.of(
        "links.public_url", url.startswith(("http://", "https://")),
        N_("{url} (requesters must be able to open it)"), url=url,
    )))
    for name in names:
        try:
            connector = FACTORIES[name](settings)
            if isinstance(connector, Checkable):
                results += [(name, r) for r in connector.check()]
        except HelpdeskError as e:
            results.append(("", CheckResult(name=name, ok=False, detail=str(e))))
    if settings.email.enabled:
        results += [("email", r) for r in mailbox_check(settings.email).check()]
    lines = []
    for prefix, r in results:
        label, detail = r.render(_)
        lines.append(CheckLine(f"{prefix}: {label}" if prefix else label, r.ok, detail))
    return lines


# -- the work queue -----------------------------------------------------------------------------------
def queue_counts(store: Store) -> dict[str, int]:
    return store.inbox.counts()


def queue_items(store: Store, *, status: str | None = None, limit: int = 50) -> list[InboxItem]:
    """The newest items first, optionally of one status (ValueError names the valid ones)."""
    return store.inbox.items(status=status, limit=limit)


def retry_item(store: Store, item_id: int) -> bool:
    """Put a dead item back in the queue (after its cause was fixed); False when it is not dead."""
    return store.inbox.requeue(item_id)


def retry_dead(store: Store, *, kind: str | None = None) -> int:
    """Put every dead item (of one kind) back in the queue; how many."""
    return store.inbox.requeue_dead(kind=kind)


def discard_item(store: Store, item_id: int, *, reason: str) -> bool:
    """Give up on a pending or dead item for good, keeping it with the reason (nothing is deleted
    without a trace); False when the item is leased (being worked), done or unknown."""
    if not reason.strip():
        raise ValueError("a reason is required to discard an item")
    return store.inbox.discard(item_id, reason=reason.strip())
