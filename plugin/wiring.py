"""Wiring: settings -> one frozen, typed :class:`Services`. The one place that turns configuration into
objects; nothing is patched in afterwards.

Only ``plugin.web.app`` and ``plugin.cli`` import this module.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.base import Connector, TicketCreator
from plugin.jobs.worker import Handler, PollJob, Waker, Worker
from plugin.service import admin, console, knowledge
from plugin.service.chat import ChatService
from plugin.service.chat_identity import ChatIdentities
from plugin.service.engines import build_engine
from plugin.service.links import LinkSigner
from plugin.service.mail import MailFlow
from plugin.service.outages import Featurize, OutageWatch
from plugin.service.outcomes import OutcomeService
from plugin.service.policy import Policies
from plugin.service.registry import build_connectors, pollers, ticket_creator
from plugin.service.tickets import Pipeline
from plugin.settings import Settings
from plugin.store import Store
from rag.embeddings import Embedder, LoadedEmbedder
from rag.engine import Engine


@dataclass(frozen=True, kw_only=True)
class Services:
    settings: Settings
    engine: Engine
    #: Why no LLM is in use although one is configured (None when it loaded or none is configured).
    llm_fallback_reason: str | None
    store: Store
    connectors: Mapping[str, Connector]
    links: LinkSigner
    pipeline: Pipeline
    outcomes: OutcomeService
    #: The support mailbox flow, when ``email.enabled``.
    mail: MailFlow | None
    #: What opens tickets on people's behalf (the chat's hand-off), when one is configured.
    creator: TicketCreator | None
    #: The self-service chat (its hand-off goes through the inbox with :attr:`creator`).
    chat: ChatService
    #: Shared by everything that enqueues and every worker of this process.
    waker: Waker
    #: This process's worker (started by ``serve`` with ``worker.embedded``, or run by ``worker``).
    worker: Worker
    #: Outage detection, when ``outages.enabled`` (the pipeline's; banners for the console and the chat).
    outages: OutageWatch | None
    #: The decision policy in effect: the settings with the admin's stored overrides (asked per request).
    policies: Policies
    #: The admin console's sign-in (local accounts, the directory, the throttle).
    accounts: console.Accounts
    #: Knowledge-base imports started from the console (run in threads of this process).
    kb_imports: console.ImportJobs

    def new_worker(self, *, owner: str | None = None) -> Worker:
        """Another worker over this process's inbox (tests run several; ``serve`` uses :attr:`worker`)."""
        return _worker(self.settings, self.store, self.pipeline, self.mail, self.chat, self.waker, owner)

    def health(self) -> dict[str, Any]:
        return admin.health(
            settings=self.settings, engine=self.engine, llm_fallback_reason=self.llm_fallback_reason,
            store=self.store, connectors=self.connectors, mailbox=self.mail is not None,
            worker_running=self.worker.running,
        )


def build_services(
    settings: Settings,
    *,
    embedder: Embedder | LoadedEmbedder | None = None,
    data_dir: Path | None = None,
    connectors: dict[str, Connector] | None = None,
    clock: Callable[[], float] = time.time,
) -> Services:
    """Everything the service needs, built from ``settings``. ``embedder``, ``connectors`` and
    ``clock`` (the state store's "now": leases, retry delays, connection health) replace the
    configured ones in tests; ``data_dir`` replaces ``settings.data_dir``."""
    root = data_dir or settings.data_dir
    engine, llm_reason = build_engine(settings, embedder=embedder, data_dir=root)
    store = Store.open(root / "state.sqlite3", clock=clock)
    # Without a connector no link is ever sent, so a missing key only needs a per-process one.
    secret = settings.secret_key.get_secret_value() or secrets.token_hex(32)
    links = LinkSigner(secret, console.link_lifetime_s(settings, store), settings.links.public_url.rstrip("/"))
    conns = build_connectors(settings) if connectors is None else connectors
    waker = Waker()
    outages = OutageWatch(store, settings.outages, lambda: outage_features(engine), clock=clock) if (
        settings.outages.enabled) else None
    policies = console.policies(settings, store)
    pipeline = Pipeline(settings, engine, store, conns, links, wake=waker.wake, outages=outages, policies=policies)
    mail = MailFlow(settings.email, pipeline) if settings.email.enabled else None
    if mail is not None:
        pipeline.appliers["email"] = mail.apply_outcome
        pipeline.open_checks["email"] = mail.conversation_open
    outcomes = OutcomeService(pipeline)
    creator = ticket_creator(settings, conns)
    identities = ChatIdentities(secret, restore_max_age_s=settings.chat.restore_link_hours * 3600)
    mailer = None
    if settings.email.enabled:
        from connectors.email.smtp import SmtpSender

        e = settings.email
        mailer = SmtpSender(e.smtp_host, e.smtp_port, e.smtp_security, e.smtp_username,
                            e.smtp_password.get_secret_value(), e.timeout_s).send
    chat = ChatService(settings, engine, store, pipeline, creator, wake=waker.wake, identities=identities,
                       mailer=mailer)
    pipeline.appliers["chat"] = chat.apply_outcome
    pipeline.open_checks["chat"] = chat.conversation_open
    return Services(
        settings=settings, engine=engine, llm_fallback_reason=llm_reason, store=store, connectors=conns,
        links=links, pipeline=pipeline, outcomes=outcomes, mail=mail, creator=creator, chat=chat,
        waker=waker, worker=_worker(settings, store, pipeline, mail, chat, waker, None), outages=outages,
        policies=policies, accounts=console.Accounts(settings, store, clock=clock),
        kb_imports=console.ImportJobs(engine, store),
    )


def outage_features(engine: Engine) -> Featurize:
    """The vectors the burst detector compares: the engine's sentence encoder plus character n-grams
    weighed over the knowledge base's questions (rag.clusters.CharMix), as bench/bench_outages.py measured."""
    import numpy as np

    from rag.clusters import CharMix
    from rag.text import clean_query

    def embed(texts: Sequence[str]) -> np.ndarray:
        return engine.embedder.embed([clean_query(t) or t for t in texts])

    corpus = [e.question for e in engine.store.entries()]
    return CharMix(embed, corpus) if corpus else embed


def _worker(
    settings: Settings, store: Store, pipeline: Pipeline, mail: MailFlow | None, chat: ChatService, waker: Waker,
    owner: str | None,
) -> Worker:
    """A worker with every handler and poller of this configuration. A poll revives an event the worker
    gave up on: seeing the ticket again means the helpdesk answers again (a webhook-only failure would
    otherwise wait for `queue retry`)."""
    handlers: dict[str, Handler] = dict(pipeline.handlers())
    handlers.update(chat.handlers())
    jobs = [
        PollJob(name=name, poll=poller.poll, interval_s=interval, enqueue=pipeline.enqueue_polled)
        for name, poller, interval in pollers(settings, dict(pipeline.connectors))
    ]
    if mail is not None:
        handlers.update(mail.handlers())
        jobs += mail.poll_jobs()
    w = settings.worker
    return Worker(
        store,
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
        waker=waker,
    )


def ensure_knowledge_base(services: Services, *, progress: bool = False) -> int:
    """Import the configured sources (or the bundled sample) when the knowledge base is empty."""
    return knowledge.ensure_knowledge_base(services.engine, services.settings, progress=progress)
