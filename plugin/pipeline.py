"""The ticket pipeline: event -> ticket -> skip rules -> retrieve/decide/compose -> post -> record.

Runs inside the worker, at-least-once: every step can be repeated after a crash or a retry
without a second effect. The suggestion row is written before anything is posted (the intent);
each comment carries the row's marker and the ticket is re-read before posting, so a comment an
earlier attempt posted is found instead of posted again.

Privacy: only the ticket's subject and description reach the engine (which masks e-mail
addresses and phone numbers before the LLM); comments, private notes above all, never do.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from typing import Any

from connectors.base import (
    Connector,
    ConnectorError,
    NotFound,
    Scoped,
    Ticket,
    TicketEvent,
    TicketReader,
    TicketStateReader,
    TicketWriter,
)
from plugin import messages
from plugin.links import LinkSigner
from plugin.records import EntryRef, Records, Suggestion, new_suggestion_id
from plugin.settings import Settings
from plugin.state import InboxItem, StateStore
from plugin.worker import PermanentFailure
from rag.engine import Engine
from rag.errors import EmptyIndexError
from rag.privacy import mask_pii
from webhooks import Accepted, IntakeUnavailable

log = logging.getLogger(__name__)

TICKET_EVENT = "ticket_event"
APPLY_OUTCOME = "apply_outcome"


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        store: StateStore,
        records: Records,
        connectors: Mapping[str, Connector],
        links: LinkSigner,
        *,
        wake: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.settings = settings
        self.engine = engine
        self.store = store
        self.records = records
        self.connectors = connectors
        self.links = links
        self.wake = wake or (lambda: None)
        self.clock = clock
        #: How an outcome is applied for sources that are not helpdesk connectors (the mailbox).
        self.appliers: dict[str, Callable[[Suggestion], None]] = {}
        #: Whether a suggestion's conversation still takes an outcome, for the same sources.
        self.open_checks: dict[str, Callable[[Suggestion], bool]] = {}

    # -- intake ----------------------------------------------------------------------------------------
    def enqueue_event(self, event: TicketEvent) -> bool:
        """Persist an event durably (de-duplicated on its delivery key). True when it is new."""
        new = self.store.enqueue(event.source, TICKET_EVENT, event.delivery_key, event.model_dump(mode="json"))
        if new is not None:
            self.wake()
        return new is not None

    def enqueue_polled(self, event: TicketEvent) -> bool:
        """A poller's event: like :meth:`enqueue_event`, and when the worker gave up on this very
        delivery (dead after ``worker.retry_for_h`` of transient failures), it is queued again: the
        poll just saw the ticket, so the helpdesk answers. A poll seeing the ticket under a new key
        (it changed since) enqueues a new event anyway."""
        new = self.store.enqueue(
            event.source, TICKET_EVENT, event.delivery_key, event.model_dump(mode="json"), revive=True
        )
        if new is not None:
            self.wake()
        return new is not None

    def accept_events(self, source: str, events: list[TicketEvent]) -> Accepted:
        """The webhooks blueprint's ``accept``: persist before the 2xx (a database failure is a 503)."""
        new = dup = 0
        try:
            for event in events:
                if self.enqueue_event(event):
                    new += 1
                else:
                    dup += 1
        except sqlite3.Error as e:
            raise IntakeUnavailable(f"inbox unavailable: {e}") from e
        return Accepted(new=new, duplicates=dup)

    def handlers(self) -> dict[str, Callable[[InboxItem], None]]:
        return {TICKET_EVENT: self.handle_event, APPLY_OUTCOME: self.handle_outcome}

    # -- one ticket event ----------------------------------------------------------------------------
    def handle_event(self, item: InboxItem) -> None:
        event = TicketEvent.model_validate(item.payload)
        connector = self._connector(event.source)
        if event.kind == "deleted":
            self.records.log(event.source, event.ticket_id, "ignored", "ticket deleted")
            return
        reader = _as(connector, TicketReader)
        ticket = reader.get_ticket(event.ticket_id)
        # Scope (Redmine projects, GLPI entities) on the ticket as it is now, whatever the delivery
        # said and whichever path brought it: webhook or poll. Outside it we touch nothing (issue 8 item 7).
        outside = connector.out_of_scope(ticket) if isinstance(connector, Scoped) else None
        if outside:
            log.info("ticket_out_of_scope: source=%s ticket=%s: %s", ticket.source, ticket.id, outside)
            return
        existing = self.records.for_ticket(event.source, ticket.id)
        if existing is not None:
            self._resume(connector, ticket, existing)
            return
        skip = self.skip_reason(ticket)
        if skip:
            log.info("ticket_skipped: source=%s ticket=%s reason=%s", ticket.source, ticket.id, skip)
            self.records.log(ticket.source, ticket.id, "skipped", skip)
            return
        suggestion = self._decide(ticket)
        suggestion = self.records.create(suggestion)
        self.records.log(ticket.source, ticket.id, "decided", f"{suggestion.mode} p={suggestion.confidence:.2f}")
        self._post(connector, ticket, suggestion)

    def skip_reason(self, ticket: Ticket) -> str | None:
        """Why this ticket gets nothing from us (None: go on)."""
        agents = {a.lower() for a in self.settings.pipeline.agent_ids}
        author = ticket.author
        if ticket.state in ("solved", "closed"):
            return f"ticket is {ticket.state}"
        if ticket.is_private:
            return "ticket is private"
        if ticket.created_by_agent:
            return "created by an agent on someone's behalf"
        if author and ({author.id.lower(), (author.login or "").lower()} & agents):
            return "created by an agent or by the plugin's own account"
        if ticket.created_at is not None:
            age_h = (datetime.now(UTC) - _aware(ticket.created_at)).total_seconds() / 3600
            if age_h > self.settings.pipeline.max_ticket_age_h:
                return f"ticket is older than {self.settings.pipeline.max_ticket_age_h:g} h"
        requester_ids = {ticket.requester.id} if ticket.requester else set()
        for c in ticket.comments:
            if not c.is_private and c.author and c.author.id not in requester_ids and not c.marker:
                return "an agent already replied"
        if not (ticket.subject.strip() or ticket.body.strip()):
            return "ticket has no text"
        return None

    def _decide(self, ticket: Ticket) -> Suggestion:
        query = "\n".join(p for p in (ticket.subject.strip(), ticket.body.strip()) if p)
        return self.suggest(
            query, source=ticket.source, ticket_id=ticket.id, title=ticket.subject,
            requester_id=ticket.requester.id if ticket.requester else "",
        )

    def suggest(
        self, query: str, *, source: str, ticket_id: str, title: str, requester_id: str,
        suggestion_id: str | None = None,
    ) -> Suggestion:
        """Ask the engine and turn its result into a suggestion row (not stored yet): one shape
        for helpdesk tickets and for mail conversations."""
        try:
            result = self.engine.ask(query, compose=True)
        except EmptyIndexError as e:
            raise PermanentFailure(f"knowledge base is empty: {e}") from e
        shadow = self.settings.shadow_mode_for(source)
        mode = "abstain" if result.decision == "abstain" else ("shadow" if shadow else "public")
        best = result.hits[0] if result.hits else None
        composed = result.composed
        entries = [
            EntryRef(
                entry_id=h.entry_id, answer_id=h.answer_id, title=h.title, question=h.question, answer=h.answer,
                score=round(h.score, 4), confidence=round(h.confidence, 4),
            )
            for h in result.hits[: max(self.settings.pipeline.max_entries, 3)]
        ]
        return Suggestion(
            id=suggestion_id or new_suggestion_id(),
            source=source,
            ticket_id=ticket_id,
            created_at=self.clock(),
            mode=mode,  # type: ignore[arg-type]
            language=result.language,
            ticket_title=title[:300],
            query=mask_pii(query)[:4000],
            category=" > ".join(result.category.levels),
            category_confidence=result.category.confidence,
            confidence=best.confidence if best else 0.0,
            threshold=result.threshold,
            reason=result.reason,
            answer_text=composed.text if composed else "",
            answer_mode=(composed.mode + (f": {composed.fallback_reason}" if composed.fallback_reason else ""))
            if composed
            else "",
            entries=entries,
            requester_id=requester_id,
        )

    def _post(self, connector: Connector, ticket: Ticket, s: Suggestion) -> None:
        # Each attempt starts from a fresh read of the ticket, so a comment an earlier attempt posted
        # is found by its marker. A write the helpdesk received but did not answer is resolved one
        # level down, in the connector (it reads back until the write shows: connectors/readback.py),
        # where each step of a multi-step write and its privacy can be checked.
        writer = _as(connector, TicketWriter)
        if s.mode == "public" and s.public_comment_id is None:
            found = ticket.comment_with_marker(s.marker("public"))
            if found is None:
                msg = messages.public_suggestion(
                    s,
                    solved_url=self.links.url(s.id, "solved"),
                    not_solved_url=self.links.url(s.id, "not_solved"),
                    max_entries=self.settings.pipeline.max_entries,
                )
                found = writer.post_comment(ticket.id, msg, private=False)
                log.info("suggestion_posted: source=%s ticket=%s suggestion=%s", s.source, ticket.id, s.id)
            self.records.set_comment(s.id, "public", found.id)
        if s.private_comment_id is None:
            found = ticket.comment_with_marker(s.marker("private"))
            if found is None:
                similar = self.records.similar_confirmed(s.entries[0].answer_id, exclude=s.id) if s.entries else []
                found = writer.post_comment(ticket.id, messages.agent_note(s, similar=similar), private=True)
                log.info("agent_note_posted: source=%s ticket=%s suggestion=%s", s.source, ticket.id, s.id)
            self.records.set_comment(s.id, "private", found.id)
        self.records.log(s.source, ticket.id, "posted", s.mode)

    def _resume(self, connector: Connector, ticket: Ticket, s: Suggestion) -> None:
        """A ticket we already know: finish posting if an earlier attempt stopped half-way, then
        look for an outcome the requester gave inside the helpdesk."""
        if (s.mode == "public" and s.public_comment_id is None) or s.private_comment_id is None:
            self._post(connector, ticket, s)
            s = self.records.get(s.id) or s
        if s.outcome is not None or s.mode == "abstain":
            return
        created = _suggested_at(ticket, s)
        for outcome in ticket.outcomes:
            if not outcome.by_requester or (outcome.at is not None and _aware(outcome.at) < created):
                continue
            # Credit the suggestion only when no agent replied publicly in between: a requester
            # approving an agent's own solution says nothing about ours.
            credited = not _agent_replied(ticket, after=created, before=outcome.at)
            s, first = self.records.record_outcome(
                s.id, outcome.kind, via="helpdesk", reason=None if credited else "agent_involved",
                comment=outcome.detail[:2000],
            )
            if first:
                log.info("outcome_in_helpdesk: source=%s ticket=%s outcome=%s", s.source, s.ticket_id, s.outcome)
                self.store.enqueue(s.source, APPLY_OUTCOME, f"outcome:{s.id}", {"suggestion_id": s.id})
                self.wake()
            return

    # -- outcomes ------------------------------------------------------------------------------------
    def record_outcome(
        self, suggestion_id: str, outcome: str, *, via: str, reason: str | None = None, comment: str = "",
        client: dict[str, str] | None = None,
    ) -> tuple[Suggestion, bool]:
        """Record an outcome (link click, mail reply) and queue its effects in the helpdesk."""
        s, first = self.records.record_outcome(
            suggestion_id, outcome, via=via, reason=reason, comment=comment, client=client  # type: ignore[arg-type]
        )
        if first:
            self.store.enqueue(s.source, APPLY_OUTCOME, f"outcome:{s.id}", {"suggestion_id": s.id})
            self.records.log(s.source, s.ticket_id, "outcome", f"{outcome} via {via}")
            self.wake()
        return s, first

    def handle_outcome(self, item: InboxItem) -> None:
        s = self.records.get(str(item.payload.get("suggestion_id", "")))
        if s is None or s.outcome is None:
            raise PermanentFailure(f"no outcome to apply for suggestion {item.payload.get('suggestion_id')!r}")
        if s.outcome_applied_at is not None:
            return
        applier = self.appliers.get(s.source)
        if applier is not None:
            applier(s)
        else:
            self._apply_in_helpdesk(self._connector(s.source), s)
        self._learn(s)
        self.records.mark_applied(s.id)
        self.records.log(s.source, s.ticket_id, "outcome_applied", f"{s.outcome} via {s.outcome_via}")

    def _apply_in_helpdesk(self, connector: Connector, s: Suggestion) -> None:
        writer = _as(connector, TicketWriter)
        ticket = _as(connector, TicketReader).get_ticket(s.ticket_id)
        marker = s.marker("outcome")
        if s.outcome_via == "helpdesk":
            # The helpdesk already closed/reopened: write what we recorded to its history.
            if ticket.comment_with_marker(marker) is None:
                writer.post_comment(s.ticket_id, messages.helpdesk_outcome_note(s, s.outcome_comment), private=True)
            return
        if s.outcome == "solved":
            if ticket.state != "closed":
                writer.close_confirmed(s.ticket_id, messages.confirmed_note(s))
        elif ticket.comment_with_marker(marker) is None:
            writer.hand_back(s.ticket_id, messages.not_solved_note(s))

    def _learn(self, s: Suggestion) -> None:
        if not s.entries or not s.query or s.mode == "abstain" or s.outcome_reason == "agent_involved":
            return
        try:
            self.engine.learn(
                s.query, s.entries[0].entry_id, positive=s.outcome == "solved", origin=f"{s.source}#{s.ticket_id}"
            )
        except Exception as e:  # noqa: BLE001 - the KB may have changed since; the outcome still stands
            log.warning("learn_skipped: suggestion=%s: %s", s.id, e)

    # -- helpers -------------------------------------------------------------------------------------
    def _connector(self, source: str) -> Connector:
        connector = self.connectors.get(source)
        if connector is None:
            raise PermanentFailure(f"connector {source!r} is not enabled")
        return connector

    def describe(self) -> dict[str, Any]:
        return {"connectors": sorted(self.connectors), "suggestions": self.records.counts()}


def _as(connector: Connector, capability: type) -> Any:
    if not isinstance(connector, capability):
        raise PermanentFailure(f"connector {connector.name!r} cannot {capability.__name__}")
    return connector


def _suggested_at(ticket: Ticket, s: Suggestion) -> datetime:
    """When our first comment appeared, on the helpdesk's own clock (GLPI reports server-local
    times to the second), so that outcomes are compared with timestamps from the same clock."""
    ours = {s.marker("public"), s.marker("private")}
    stamps = [_aware(c.created_at) for c in ticket.comments if c.marker in ours and c.created_at is not None]
    if stamps:
        return min(stamps)
    return datetime.fromtimestamp(int(s.created_at), UTC)


def _agent_replied(ticket: Ticket, *, after: datetime, before: datetime | None) -> bool:
    requester = ticket.requester.id if ticket.requester else None
    for c in ticket.comments:
        if c.is_private or c.marker or (c.author and c.author.id == requester) or c.created_at is None:
            continue
        at = _aware(c.created_at)
        if at >= after and (before is None or at <= _aware(before)):
            return True
    return False


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


class ConfirmBackend:
    """The confirmation pages' view of the pipeline (plugin.confirm.OutcomeBackend).

    Whether the ticket is still open decides whether a click may count: after an agent closed the
    ticket, a late "solved" must record nothing and teach the engine nothing. Mail conversations
    answer from our own table (open while we wait for the user). A helpdesk costs a request, and a
    GET must stay cheap (link scanners open every link, sometimes several times): it asks through a
    cache of ``STATE_TTL_S`` per ticket, at most one request in flight per ticket, and waits at most
    ``GET_WAIT_S``; a state it cannot learn in time counts as open (the form is shown). The POST that
    would record asks afresh, and records nothing while the helpdesk cannot say.
    """

    STATE_TTL_S = 60.0
    GET_WAIT_S = 3.0

    def __init__(self, pipeline: Pipeline, *, clock: Callable[[], float] = time.monotonic):
        self.pipeline = pipeline
        self.clock = clock
        self._lock = threading.Lock()
        #: (source, ticket id) -> (when read, open / closed / None: unknown)
        self._states: dict[tuple[str, str], tuple[float, bool | None]] = {}
        self._inflight: dict[tuple[str, str], Future[bool | None]] = {}
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="confirm-state")

    def view(self, suggestion_id: str, *, state: str = "cached") -> Any:
        from plugin.confirm import SuggestionView

        s = self.pipeline.records.get(suggestion_id)
        if s is None:
            return None
        is_open: bool | None = True
        if s.outcome is None and state != "skip":  # a recorded outcome is shown whatever the ticket's state
            is_open = self._fresh(s) if state == "fresh" else self._cached(s)
        settings = self.pipeline.settings
        names = {"glpi": "GLPI", "redmine": "Redmine", "email": "E-mail"}
        return SuggestionView(
            suggestion_id=s.id,
            ticket_ref=f"{names.get(s.source, s.source)} #{s.ticket_id}" if s.source != "email" else names["email"],
            ticket_title=s.ticket_title,
            answer_text=s.answer_text,
            entries=[(e.title or e.question, e.answer) for e in s.entries[: settings.pipeline.max_entries]],
            language="ru" if s.language == "ru" else "en",
            outcome=s.outcome,
            ticket_open=is_open is not False,
            state_known=is_open is not None,
        )

    # -- the ticket's state ------------------------------------------------------------------------
    def _cached(self, s: Suggestion) -> bool | None:
        if s.source in self.pipeline.open_checks:
            return self._read_open(s)  # our own table: cheap
        key = (s.source, s.ticket_id)
        with self._lock:
            known = self._states.get(key)
            if known is not None and self.clock() - known[0] < self.STATE_TTL_S:
                return known[1]
            future = self._inflight.get(key)
            if future is None:
                future = self._pool.submit(self._read_in_background, s)
                self._inflight[key] = future
        try:
            return future.result(timeout=self.GET_WAIT_S)
        except FutureTimeout:
            log.info("confirm_ticket_state_slow: source=%s ticket=%s: shown as open", s.source, s.ticket_id)
            return None

    def _read_in_background(self, s: Suggestion) -> bool | None:
        try:
            return self._fresh(s)
        finally:
            with self._lock:
                self._inflight.pop((s.source, s.ticket_id), None)

    def _fresh(self, s: Suggestion) -> bool | None:
        is_open = self._read_open(s)
        with self._lock:
            self._states[(s.source, s.ticket_id)] = (self.clock(), is_open)
        return is_open

    def _read_open(self, s: Suggestion) -> bool | None:
        """True / False: the ticket or conversation is open / closed; None: the helpdesk cannot say."""
        check = self.pipeline.open_checks.get(s.source)
        try:
            if check is not None:
                return check(s)
            connector = self.pipeline.connectors.get(s.source)
            if isinstance(connector, TicketStateReader):
                state = connector.ticket_state(s.ticket_id)
            elif isinstance(connector, TicketReader):
                state = connector.get_ticket(s.ticket_id).state
            else:
                return True  # nothing can tell (connector disabled since): as before, the worker decides
        except NotFound:
            log.info("confirm_ticket_gone: source=%s ticket=%s", s.source, s.ticket_id)
            return False  # deleted, or no longer visible to us: nothing left to confirm
        except ConnectorError as e:
            log.warning("confirm_ticket_state_unknown: source=%s ticket=%s: %s", s.source, s.ticket_id, e)
            return None
        except Exception:
            log.exception("confirm_ticket_state_failed: source=%s ticket=%s", s.source, s.ticket_id)
            return None
        return state != "closed"

    def record(
        self, suggestion_id: str, outcome: str, *, reason: str | None, comment: str, via: str, client: dict[str, str]
    ) -> Any:
        from plugin.confirm import RecordResult

        s, first = self.pipeline.record_outcome(
            suggestion_id, outcome, via=via, reason=reason, comment=comment, client=client
        )
        return RecordResult(outcome=s.outcome or outcome, first_time=first)  # type: ignore[arg-type]
