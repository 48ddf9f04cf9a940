"""Wiring: settings -> embedder, LLM and engine. The one place that turns configuration into objects."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dataset import SAMPLE_KB
from dataset.importers import read_kb
from plugin.settings import Settings
from rag.embeddings import Embedder, LoadedEmbedder, load_embedder
from rag.engine import Engine, EngineConfig
from rag.errors import ModelLoadError
from rag.llm import load_llm
from rag.store import VectorStoreConfig

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    engine: Engine
    #: Why no LLM is in use although one is configured (None when it loaded or none is configured).
    llm_fallback_reason: str | None = None
    #: The ticket side (issue 3): state store, connectors, links, pipeline, confirmation backend.
    store: Any = None
    records: Any = None
    connectors: dict[str, Any] = field(default_factory=dict)
    links: Any = None
    pipeline: Any = None
    outcomes: Any = None
    #: The support mailbox flow (issue 4), when email.enabled.
    mail: Any = None
    #: The worker that runs inside this process, if any (``serve`` with worker.embedded).
    worker: Any = None

    def wake_worker(self) -> None:
        if self.worker is not None:
            self.worker.wake()

    def make_worker(self, *, owner: str | None = None) -> Any:
        """A worker over this process's inbox, with the enabled connectors' pollers."""
        from plugin.registry import pollers
        from plugin.worker import PollJob, Worker

        w = self.settings.worker
        # A poll revives an event the worker gave up on: seeing the ticket again means the helpdesk
        # answers again (a webhook-only failure would otherwise wait for `queue retry`).
        jobs = [
            PollJob(name=name, poll=poller.poll, interval_s=interval, enqueue=self.pipeline.enqueue_polled)
            for name, poller, interval in pollers(self.settings, self.connectors)
        ]
        handlers = self.pipeline.handlers()
        if self.mail is not None:
            handlers.update(self.mail.handlers())
            jobs += self.mail.poll_jobs()
        return Worker(
            self.store,
            handlers,
            owner=owner,
            lease_s=w.lease_s,
            max_attempts=w.max_attempts,
            backoff_base_s=w.backoff_base_s,
            backoff_max_s=w.backoff_max_s,
            retry_for_s=w.retry_for_h * 3600,
            idle_poll_s=w.idle_poll_s,
            pollers=jobs,
            purge_done_after_s=w.purge_done_after_days * 86_400,
            keep_delivery_keys_s=w.keep_delivery_keys_days * 86_400,
        )

    def connections(self) -> dict[str, dict[str, Any]]:
        """Per enabled helpdesk (and the mailbox), whether the worker can reach it: ``ok``, or
        ``unreachable`` since the first transient failure of the current streak (store clock),
        cleared by the next success. Recorded in the state file, so any process sees it."""
        if self.store is None:
            return {}
        known = self.store.connection_health()
        # Only what is enabled now: a connector switched off since keeps no stale "unreachable".
        names = sorted(set(self.connectors) | ({"email"} if self.mail is not None else set()))
        now = self.store.clock()
        out: dict[str, dict[str, Any]] = {}
        for name in names:
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

    def health(self) -> dict[str, Any]:
        """What /healthz and `helpdesk-assist status` show: models, fallbacks, index size, queue,
        and which helpdesks the worker cannot reach (since when)."""
        stats = self.engine.stats()
        emb = self.engine.embedding
        connections = self.connections()
        unreachable = any(c["state"] != "ok" for c in connections.values())
        degraded = bool(emb.fallback_reason or self.llm_fallback_reason or unreachable)
        return {
            "status": "degraded" if degraded else "ok",
            "models": {
                "embedding": {
                    "configured": emb.requested,
                    "in_use": self.engine.embedder.name,
                    "fallback": emb.fallback_reason is not None,
                    "fallback_reason": emb.fallback_reason,
                },
                "llm": {
                    "configured": self.settings.llm.backend
                    + ("" if self.settings.llm.backend == "none" else f":{self.settings.llm.model}"),
                    "in_use": getattr(self.engine.llm, "name", None),
                    "mode": "llm" if self.engine.llm is not None else "extractive only",
                    "fallback_reason": self.llm_fallback_reason,
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
            "connectors": sorted(self.connectors),
            "connections": connections,
            "queue": self.store.counts() if self.store is not None else {},
            "worker": "running" if self.worker is not None else "not in this process",
        }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def engine_config(settings: Settings, data_dir: Path | None = None) -> EngineConfig:
    root = data_dir or settings.data_dir
    vs = settings.vector_store
    return EngineConfig(
        data_dir=root,
        vector_store=VectorStoreConfig(
            mode=vs.mode, path=root / "chroma", host=vs.host, port=vs.port, ssl=vs.ssl, collection=vs.collection
        ),
        candidates=settings.retrieval.candidates,
        top_k=settings.retrieval.top_k,
        threshold=settings.decision.threshold,
        category_thresholds=dict(settings.decision.category_thresholds),
        disabled_categories=list(settings.decision.disabled_categories),
        default_language=settings.default_language,
    )


def load_configured_embedder(settings: Settings) -> LoadedEmbedder:
    e = settings.embeddings
    return load_embedder(
        e.model, fallback=e.fallback, device=e.device, batch_size=e.batch_size, offline=settings.offline
    )


def load_configured_llm(settings: Settings) -> tuple[Any, str | None]:
    """The configured LLM, or (None, reason) when it cannot be loaded: answers are then extractive."""
    cfg = settings.llm
    if cfg.backend == "none":
        return None, None
    try:
        llm = load_llm(
            cfg.backend,
            model=cfg.model,
            base_url=cfg.base_url,
            api_key=cfg.api_key.get_secret_value(),
            device=cfg.device,
            timeout_s=cfg.timeout_s,
        )
    except ModelLoadError as e:
        log.warning("llm_unavailable: %s; ANSWERS WILL BE EXTRACTIVE (the entries themselves)", e)
        return None, str(e)
    return llm, None


def build_services(
    settings: Settings,
    *,
    embedder: Embedder | LoadedEmbedder | None = None,
    data_dir: Path | None = None,
    connectors: dict[str, Any] | None = None,
    clock: Callable[[], float] = time.time,
) -> Services:
    """``clock``: the state store's "now" (leases, retry delays, connection health); tests pass a
    fake one."""
    loaded = embedder if embedder is not None else load_configured_embedder(settings)
    llm, llm_reason = load_configured_llm(settings)
    engine = Engine(
        engine_config(settings, data_dir),
        loaded,
        llm=llm,
        llm_options={
            "max_new_tokens": settings.llm.max_new_tokens,
            "temperature": settings.llm.temperature,
            "timeout_s": settings.llm.timeout_s,
        },
    )
    services = Services(settings=settings, engine=engine, llm_fallback_reason=llm_reason)
    attach_ticket_side(services, data_dir=data_dir, connectors=connectors, clock=clock)
    return services


def attach_ticket_side(
    services: Services, *, data_dir: Path | None = None, connectors: dict[str, Any] | None = None,
    clock: Callable[[], float] = time.time,
) -> None:
    """State store, connectors, signed links and the pipeline over ``services.engine``."""
    from plugin.links import LinkSigner
    from plugin.pipeline import ConfirmBackend, Pipeline
    from plugin.records import Records
    from plugin.registry import build_connectors
    from plugin.state import StateStore

    settings = services.settings
    root = data_dir or settings.data_dir
    store = StateStore(root / "state.sqlite3", clock=clock)
    records = Records(store)
    # Without a connector no link is ever sent, so a missing key only needs a per-process one.
    secret = settings.secret_key.get_secret_value() or secrets.token_hex(32)
    links = LinkSigner(secret, settings.links.lifetime_days * 86_400, settings.links.public_url.rstrip("/"))
    conns = build_connectors(settings) if connectors is None else connectors
    pipeline = Pipeline(settings, services.engine, store, records, conns, links, wake=services.wake_worker)
    services.store, services.records, services.connectors = store, records, conns
    services.links, services.pipeline, services.outcomes = links, pipeline, ConfirmBackend(pipeline)
    if settings.email.enabled:
        from plugin.mail_flow import MailFlow

        services.mail = MailFlow(settings.email, pipeline)
        pipeline.appliers["email"] = services.mail.apply_outcome
        pipeline.open_checks["email"] = services.mail.conversation_open


def ensure_knowledge_base(services: Services, *, progress: bool = False) -> int:
    """Import the configured sources (or the bundled sample) when the knowledge base is empty."""
    engine = services.engine
    if engine.store.count() > 0:
        engine.sync(progress=progress)
        return 0
    sources = services.settings.kb.sources or [SAMPLE_KB]
    imported = 0
    for path in sources:
        result = read_kb(path, progress=progress)
        for problem in result.rejected:
            log.warning("kb_row_rejected: %s", problem)
        report = engine.import_entries(result.entries, progress=progress)
        imported += report.imported
        log.info("kb_imported: %s: %d entries (%d rejected rows)", result.source, report.imported, len(result.rejected))
    return imported
