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
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from connectors.base import (
    Connector,
    Scoped,
    Ticket,
    TicketEvent,
    TicketReader,
    TicketWriter,
)
from plugin.jobs.worker import PermanentFailure
from plugin.service import messages
from plugin.service.links import LinkSigner
from plugin.service.outages import OutageWatch, agents_note, request_id
from plugin.service.policy import Policies
from plugin.settings import Settings
from plugin.store import Store
from plugin.store.inbox import InboxItem
from plugin.store.suggestions import EntryRef, Suggestion, new_suggestion_id
from rag.engine import Engine
from rag.errors import EmptyIndexError
from rag.privacy import mask_pii
from rag.text import detect_language

log = logging.getLogger(__name__)

TICKET_EVENT = "ticket_event"
APPLY_OUTCOME = "apply_outcome"


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        store: Store,
        connectors: Mapping[str, Connector],
        links: LinkSigner,
        *,
        wake: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
        policies: Policies | None = None,
        outages: OutageWatch | None = None,
    ):
        self.settings = settings
        self.engine = engine
        self.store = store
        self.records = store.suggestions
        self.connectors = connectors
        self.links = links
        self.wake = wake or (lambda: None)
        self.clock = clock
        #: The decisions in effect (thresholds, switches, shadow mode), asked for at each request.
        self.policies = policies or Policies(settings)
        #: Outage detection (``outages.enabled``): a request of an open incident gets its message.
        self.outages = outages
        #: Draws the holdout (``analytics.holdout_share``): a number in [0, 1) per eligible ticket.
        self.holdout_draw: Callable[[], float] = random.random
        #: How an outcome is applied for sources that are not helpdesk connectors (the mailbox).
        self.appliers: dict[str, Callable[[Suggestion], None]] = {}
        #: Whether a suggestion's conversation still takes an outcome, for the same sources.
        self.open_checks: dict[str, Callable[[Suggestion], bool]] = {}

    # -- intake ----------------------------------------------------------------------------------------
    def enqueue_event(self, event: TicketEvent) -> bool:
        """Persist an event durably (de-duplicated on its delivery key). True when it is new."""
        new = self.store.inbox.enqueue(event.source, TICKET_EVENT, event.delivery_key, event.model_dump(mode="json"))
        if new is not None:
            self.wake()
        return new is not None

    def enqueue_polled(self, event: TicketEvent) -> bool:
        """A poller's event: like :meth:`enqueue_event`, and when the worker gave up on this very
        delivery (dead after ``worker.retry_for_h`` of transient failures), it is queued again: the
        poll just saw the ticket, so the helpdesk answers. A poll seeing the ticket under a new key
        (it changed since) enqueues a new event anyway."""
        new = self.store.inbox.enqueue(
            event.source, TICKET_EVENT, event.delivery_key, event.model_dump(mode="json"), revive=True
        )
        if new is not None:
            self.wake()
        return new is not None

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
        if self.outages is not None:
            self._incident_note(connector, ticket, suggestion)

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
        if self.outages is not None:
            seen = self.outages.observe(source=source, ticket_id=ticket_id, text=query)
            if seen.known_problem and seen.incident_id is not None:
                language = detect_language(query, self.settings.default_language)
                return Suggestion(
                    id=suggestion_id or new_suggestion_id(), source=source, ticket_id=ticket_id,
                    created_at=self.clock(), mode="incident", language=language, ticket_title=title[:300],
                    query=mask_pii(query)[:4000], reason=seen.incident_id,
                    answer_text=self.outages.message(seen.incident_id, language), requester_id=requester_id,
                )
        policy = self.policies.current()
        try:
            result = self.engine.ask(query, compose=True, policy=policy.decision)
        except EmptyIndexError as e:
            raise PermanentFailure(f"knowledge base is empty: {e}") from e
        shadow = policy.shadow_mode_for(source)
        mode = "abstain" if result.decision == "abstain" else ("shadow" if shadow else "public")
        if mode == "public" and self.holdout_draw() < self.settings.analytics.holdout_share:
            # The holdout (issue 13): eligible, drawn at random, only the private note. Recorded with
            # the suggestion (mode, and the reason of its "suggested" event); the report compares it.
            mode = "holdout"
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
            reason_code=result.reason_code,
            reason_params=result.reason_params,
            answer_text=composed.text if composed else "",
            answer_mode=(composed.mode + (f":{composed.fallback_code}" if composed.fallback_code else ""))
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
        if s.mode == "incident" and s.public_comment_id is None:
            found = ticket.comment_with_marker(s.marker("public"))
            if found is None:
                found = writer.post_comment(ticket.id, messages.incident_reply(s), private=False)
                log.info("incident_message_posted: source=%s ticket=%s incident=%s", s.source, ticket.id, s.reason)
            self.records.set_comment(s.id, "public", found.id)
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

    def _incident_note(self, connector: Connector, ticket: Ticket, s: Suggestion) -> None:
        """The one note linking an incident's tickets, posted by the first ticket of it handled here after
        it opened (the one that opened it, as a rule)."""
        incidents = self.store.incidents
        incident_id = incidents.incident_of(request_id(s.source, ticket.id))
        if incident_id is None or not incidents.claim_note(incident_id):
            return
        try:
            row = incidents.get(incident_id)
            assert row is not None
            heading, lines = agents_note(row, incidents.members(incident_id), s.language)
            if ticket.comment_with_marker(s.marker("incident")) is None:
                _as(connector, TicketWriter).post_comment(ticket.id, messages.incident_note(s, heading, lines),
                                                          private=True)
            log.info("incident_note_posted: source=%s ticket=%s incident=%s", s.source, ticket.id, incident_id)
        except BaseException:
            incidents.release_note(incident_id)
            raise

    def _resume(self, connector: Connector, ticket: Ticket, s: Suggestion) -> None:
        """A ticket we already know: finish posting if an earlier attempt stopped half-way, look for
        an outcome the requester gave inside the helpdesk, and note in the suggestion's history what
        the timeline shows since."""
        if (s.mode in ("public", "incident") and s.public_comment_id is None) or s.private_comment_id is None:
            self._post(connector, ticket, s)
            s = self.records.get(s.id) or s
        if self.outages is not None:
            self._incident_note(connector, ticket, s)
        created = _suggested_at(ticket, s)
        if s.outcome is None and s.mode not in ("abstain", "holdout", "incident"):
            s = self._outcome_in_helpdesk(ticket, s, created)
        self._observe(ticket, s, created)

    def _outcome_in_helpdesk(self, ticket: Ticket, s: Suggestion, created: datetime) -> Suggestion:
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
                self.store.inbox.enqueue(s.source, APPLY_OUTCOME, f"outcome:{s.id}", {"suggestion_id": s.id})
                self.wake()
            break
        return s

    def _observe(self, ticket: Ticket, s: Suggestion, created: datetime) -> None:
        """What the helpdesk's timeline shows since our suggestion, into its history (each event once):
        an agent's public reply, the ticket closed without the requester's confirmation, the ticket
        reopened after it was confirmed and closed."""
        requester = ticket.requester.id if ticket.requester else None
        for c in ticket.comments:
            if c.is_private or c.marker or c.created_at is None or (c.author and c.author.id == requester):
                continue
            if _aware(c.created_at) >= created:
                self.records.add_event(s.id, "agent_replied", channel="helpdesk", ref=c.id,
                                       at=_aware(c.created_at).timestamp())
        closed_before = False
        if ticket.state == "closed" and s.outcome != "solved":
            self.records.add_event(s.id, "closed_by_agent", channel="helpdesk")
        elif s.mode != "abstain" and s.outcome != "solved" and ticket.state not in ("solved", "closed"):
            kinds = [e.kind for e in self.records.events(s.id)]
            # Once: the first time the ticket is seen open again after an agent closed it.
            closed_before = "closed_by_agent" in kinds and "reopened" not in kinds[kinds.index("closed_by_agent"):]
        if closed_before:
            # A ticket an agent closed, open again (the reopen rate of the holdout comparison counts
            # these in both groups; a confirmed one's reopen is noted below).
            stamp = ticket.updated_at.isoformat() if ticket.updated_at else ticket.status_name
            self.records.add_event(s.id, "reopened", channel="helpdesk", ref=stamp,
                                   comment=f"status {ticket.status_name}")
        if s.outcome == "solved" and s.outcome_applied_at is not None and ticket.state not in ("solved", "closed"):
            stamp = ticket.updated_at.isoformat() if ticket.updated_at else ticket.status_name
            if self.records.add_event(s.id, "reopened", channel="helpdesk", ref=stamp,
                                      comment=f"status {ticket.status_name}"):
                log.info("suggestion_reopened: source=%s ticket=%s suggestion=%s", s.source, s.ticket_id, s.id)

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
            self.store.inbox.enqueue(s.source, APPLY_OUTCOME, f"outcome:{s.id}", {"suggestion_id": s.id})
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
        if s.outcome == "not_solved":
            self.records.add_event(s.id, "handed_off", channel="helpdesk", reason=s.outcome_reason)

    def _learn(self, s: Suggestion) -> None:
        skipped = s.mode in ("abstain", "holdout", "incident") or s.outcome_reason == "agent_involved"
        if not s.entries or not s.query or skipped:
            return
        try:
            self.engine.learn(
                s.query, s.entries[0].entry_id, positive=s.outcome == "solved", origin=f"{s.source}#{s.ticket_id}"
            )
            # Every 25 outcomes the category model and the reranker are retrained from them.
            self.engine.refit_if_due()
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
