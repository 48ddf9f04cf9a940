"""Outcomes: a suggestion's answer from the requester, and the view the pages show of a suggestion.

A link click, a mail reply, a chat rating and the helpdesk itself all end in
:meth:`plugin.service.tickets.Pipeline.record_outcome`; the first answer stands. Whether the ticket is
still open decides whether a click may count (issue 8 item 10): this module asks the helpdesk.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Literal, get_args

from pydantic import BaseModel

from connectors.base import ConnectorError, NotFound, TicketReader, TicketStateReader
from plugin.service.links import Action
from plugin.service.tickets import Pipeline
from plugin.store.suggestions import Suggestion

log = logging.getLogger(__name__)

#: Why a requester says a suggestion did not help (the same choices on every channel).
Reason = Literal["not_related", "not_enough", "other"]
REASONS: tuple[Reason, ...] = get_args(Reason)
Language = Literal["ru", "en"]

class SuggestionView(BaseModel):
    """What the page shows about one suggestion."""

    suggestion_id: str
    #: e.g. "GLPI #123", "Redmine #45", "mail".
    ticket_ref: str
    ticket_title: str
    #: Our short answer.
    answer_text: str
    #: (title, text) of up to three knowledge-base entries.
    entries: list[tuple[str, str]]
    language: Language
    #: The outcome already recorded, if any.
    outcome: Action | None
    #: False when the ticket was closed meanwhile by someone else.
    ticket_open: bool
    #: False when the helpdesk could not say whether the ticket is still open (it is shown as open;
    #: a POST then records nothing and asks to try again later).
    state_known: bool = True


class RecordResult(BaseModel):
    #: The outcome that stands (the first one recorded).
    outcome: Action
    #: False on a repeated POST.
    first_time: bool


#: How fresh the ticket's state must be: "skip" (not needed), "cached" (a GET: cheap, may be a
#: minute old, unknown counts as open), "fresh" (a POST about to record: asked now).
StateCheck = Literal["skip", "cached", "fresh"]




class OutcomeService:
    """What the confirmation pages (and, with the same rules, every other channel that answers a
    suggestion) need from the pipeline: a view of one suggestion, and recording the answer.

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

    def view(self, suggestion_id: str, *, state: StateCheck = "cached") -> SuggestionView | None:
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
        self, suggestion_id: str, outcome: Action, *, reason: Reason | None, comment: str, via: str,
        client: dict[str, str],
    ) -> RecordResult:
        s, first = self.pipeline.record_outcome(
            suggestion_id, outcome, via=via, reason=reason, comment=comment, client=client
        )
        return RecordResult(outcome=s.outcome or outcome, first_time=first)
