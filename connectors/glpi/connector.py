r"""GLPI connector: the legacy REST API for reading, writing and polling; GLPI 11 webhooks inbound.

Facts from GLPI's own source and API documentation (cited where used). GLPI behaviours the pipeline
should know:
- GLPI's solution approval *is* our "the requester confirmed": :meth:`GLPIConnector.close_confirmed`
  adds a solution (ticket 5, solution waiting) then approves it with an ``add_close`` follow-up
  (ticket 6, solution accepted), or nothing more when the entity closes solved tickets at once.
- A follow-up on a ticket in status 4 (pending) reopens it, and a requester's follow-up on a solved
  ticket refuses the solution and reopens it (GLPI's ``ParentStatus`` feature). A public reply of ours on a
  pending ticket therefore moves it back to processing: that is GLPI's rule, not ours.
- Private follow-ups are readable only with the profile right "see private follow-ups": without
  it the read-back of a private note fails and raises WriteNotApplied (check() says so first).
- An ``add`` (POST) that GLPI received but did not answer may still land: the ticket's follow-ups
  or solutions are read back for ``unknown_write_wait_s`` until one carrying our marker shows,
  before the add counts as lost; adding again at once would double the follow-up.
- Opening a ticket on someone's behalf (:class:`~connectors.base.TicketCreator`): ``POST Ticket``
  with ``_users_id_requester`` = the person's GLPI user. The plugin's account is the writer
  (``users_id_recipient``), so such tickets read as ``created_by_agent`` and get no suggestion.
"""

from __future__ import annotations

import html
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import requests
from pydantic import ValidationError

from connectors.base import (
    N_,
    AuthenticationError,
    Checkable,
    CheckResult,
    Comment,
    Connector,
    ConnectorError,
    EventKind,
    HelpdeskOutcome,
    NewTicket,
    NotFound,
    OutgoingMessage,
    PermissionDenied,
    Person,
    RejectedByHelpdesk,
    Scoped,
    Text,
    Ticket,
    TicketCreator,
    TicketEvent,
    TicketPoller,
    TicketReader,
    TicketState,
    TicketStateReader,
    TicketWriter,
    TransientConnectorError,
    WebhookSource,
    WriteNotApplied,
    WriteOutcomeUnknown,
    clean_lookup,
    find_marker,
)
from connectors.glpi import webhook
from connectors.glpi.client import GLPIClient, secret_value
from connectors.glpi.payloads import (
    ActiveProfile,
    LegacyFollowup,
    LegacySolution,
    LegacyTicket,
    LegacyTicketUser,
    LegacyUser,
    LegacyUserEmail,
    SearchResponse,
    SearchTicketRow,
    SearchUserRow,
)
from connectors.readback import await_write

log = logging.getLogger(__name__)

# GLPI constants (CommonITILActor, CommonITILObject, CommonITILValidation) and profile right bits
# (ITILFollowup, Ticket, User).
STATUS_SOLVED, STATUS_CLOSED, STATUS_WAITING = 5, 6, 4
STATE_OF: dict[int, TicketState] = {1: "new", 2: "open", 3: "open", 4: "waiting", 5: "solved", 6: "closed"}
STATUS_NAMES = {1: "New", 2: "Processing (assigned)", 3: "Processing (planned)", 4: "Pending", 5: "Solved",
                6: "Closed"}
REQUESTER = 1
SOLUTION_ACCEPTED, SOLUTION_REFUSED = 3, 4
RIGHT_TICKET_UPDATE, RIGHT_TICKET_READALL = 2, 1024
RIGHT_FOLLOWUP_ADDALL, RIGHT_FOLLOWUP_SEEPRIVATE = 4096, 8192
RIGHT_USER_READ = 1
RIGHT_TICKET_CREATE = 4
# Search options (listSearchOptions/User and /Ticket; User::rawSearchOptions, CommonITILObject).
OPT_USER_LOGIN, OPT_USER_ID, OPT_USER_EMAIL, OPT_USER_ACTIVE, OPT_USER_FIRSTNAME, OPT_USER_REALNAME = 1, 2, 5, 8, 9, 34
OPT_TICKET_ID, OPT_TICKET_NAME, OPT_TICKET_REQUESTER, OPT_TICKET_DATE, OPT_TICKET_CONTENT = 2, 1, 4, 15, 21

DATE_FMT = "%Y-%m-%d %H:%M:%S"
POLL_PAGE = 50
EPOCH = "1970-01-01 00:00:00"
#: Refusal follow-up and the solution's ``date_approval`` are written by the same request.
_REFUSAL_WINDOW = timedelta(seconds=120)
_SAFE_SCHEMES = ("http://", "https://", "mailto:")


@dataclass(frozen=True)
class GLPIConfig:
    """Plain settings of the connector (the plugin maps its GLPISettings onto these)."""

    url: str
    user_token: str
    app_token: str = ""
    webhook_secret: str = ""
    webhook_max_age_s: int = 6 * 3600
    timeout_s: float = 15.0
    verify_tls: bool = True
    web_url: str = ""
    bot_user_id: str | None = None
    poll: bool = False
    poll_overlap_s: int = 60
    unknown_write_wait_s: float = 60.0
    #: Entity ids whose tickets we answer (empty: every entity the plugin's profile sees).
    entities: tuple[int, ...] = ()
    #: Tickets are opened on people's behalf (the chat's hand-off): check() tests the right to.
    create_tickets: bool = False
    #: Entity of the tickets we open; None: the plugin account's active entity.
    create_entity_id: int | None = None


def derive_web_url(api_url: str) -> str:
    """``https://glpi.example/apirest.php`` (or ``/api.php/v1``) -> ``https://glpi.example``."""
    base = api_url.rstrip("/")
    for suffix in ("/apirest.php", "/api.php/v1", "/api.php", "/api"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


class GLPIConnector(Connector, TicketReader, TicketStateReader, TicketWriter, WebhookSource, TicketPoller,
                    Scoped, Checkable, TicketCreator):
    name = "glpi"

    def __init__(self, url: str, user_token: Any, app_token: Any = "", webhook_secret: Any = "",
                 webhook_max_age_s: int = 6 * 3600, timeout_s: float = 15.0, verify_tls: bool = True,
                 web_url: str = "", bot_user_id: str | int | None = None, *, poll: bool = False,
                 poll_overlap_s: int = 60, session: requests.Session | None = None,
                 unknown_write_wait_s: float = 60.0, sleep: Callable[[float], None] = time.sleep,
                 entities: tuple[int, ...] = (), create_tickets: bool = False,
                 create_entity_id: int | None = None) -> None:
        self.config = GLPIConfig(url=url, user_token=secret_value(user_token), app_token=secret_value(app_token),
                                 webhook_secret=secret_value(webhook_secret), webhook_max_age_s=webhook_max_age_s,
                                 timeout_s=timeout_s, verify_tls=verify_tls,
                                 web_url=(web_url or derive_web_url(url)).rstrip("/"),
                                 bot_user_id=str(bot_user_id) if bot_user_id not in (None, "") else None,
                                 poll=poll, poll_overlap_s=poll_overlap_s, unknown_write_wait_s=unknown_write_wait_s,
                                 entities=tuple(entities), create_tickets=create_tickets,
                                 create_entity_id=create_entity_id)
        self.client = GLPIClient(url, self.config.user_token, self.config.app_token, timeout_s, verify_tls, session)
        self._bot_id: str | None = self.config.bot_user_id
        self._sleep = sleep

    @property
    def bot_user_id(self) -> str | None:
        """The GLPI user id we write as (configured, or learned from the session): events whose
        ``actor_id`` equals it are our own echoes."""
        if self._bot_id is None:
            try:
                self._bot_id = self.client.whoami()[0] or None
            except ConnectorError:
                return None
        return self._bot_id

    @classmethod
    def from_config(cls, config: GLPIConfig, session: requests.Session | None = None) -> GLPIConnector:
        return cls(config.url, config.user_token, config.app_token, config.webhook_secret, config.webhook_max_age_s,
                   config.timeout_s, config.verify_tls, config.web_url, config.bot_user_id, poll=config.poll,
                   poll_overlap_s=config.poll_overlap_s, session=session,
                   unknown_write_wait_s=config.unknown_write_wait_s, entities=config.entities,
                   create_tickets=config.create_tickets, create_entity_id=config.create_entity_id)

    def close(self) -> None:
        self.client.close()

    def ticket_url(self, ticket_id: str | int) -> str:
        return f"{self.config.web_url}/front/ticket.form.php?id={ticket_id}"

    # ============================================================================ reading
    def _legacy_ticket(self, ticket_id: str | int) -> LegacyTicket:
        data = self.client.get_item("Ticket", _id(ticket_id), [("add_keys_names[]", "itilcategories_id"),
                                                                ("add_keys_names[]", "users_id_recipient")])
        try:
            return LegacyTicket.model_validate(data)
        except ValidationError as e:
            raise RejectedByHelpdesk(f"GLPI returned a Ticket {ticket_id} we cannot read: {e}") from e

    def ticket_state(self, ticket_id: str) -> TicketState:
        """One ``GET Ticket/N``: the state only (confirmation pages)."""
        return STATE_OF.get(self._legacy_ticket(ticket_id).status, "open")

    def get_ticket(self, ticket_id: str) -> Ticket:
        """The ticket, its requester(s) with e-mail, its timeline and the requester's approvals/refusals.

        ``GET Ticket/N`` uses ``add_keys_names[]`` rather than ``expand_dropdowns``: expanding replaces
        ``users_id_recipient`` by a name, and we need the id to tell an agent-filed ticket.
        """
        t = self._legacy_ticket(ticket_id)
        actors = [LegacyTicketUser.model_validate(r) for r in self.client.get_subitems("Ticket", t.id, "Ticket_User")]
        requesters = [self._person(a) for a in actors if a.type == REQUESTER]
        requester_ids = {p.id for p in requesters}
        people = {p.id: p for p in requesters}
        author = None
        if t.users_id_recipient:
            author = people.get(str(t.users_id_recipient)) or Person(
                id=str(t.users_id_recipient), name=str(t.keys_names.get("users_id_recipient") or ""))
            people.setdefault(author.id, author)
        followups = [LegacyFollowup.model_validate(r) for r in self.client.get_subitems("Ticket", t.id, "ITILFollowup")]
        solutions = [LegacySolution.model_validate(r) for r in self.client.get_subitems("Ticket", t.id, "ITILSolution")]
        category = str(t.keys_names.get("itilcategories_id") or "")
        return Ticket(
            source=self.name, id=str(t.id), subject=t.name, body=html_to_text(t.content),
            state=STATE_OF.get(t.status, "open"), status_name=f"{STATUS_NAMES.get(t.status, 'Unknown')} ({t.status})",
            requester=requesters[0] if requesters else None, author=author,
            created_by_agent=bool(t.users_id_recipient) and str(t.users_id_recipient) not in requester_ids,
            category=tuple(p.strip() for p in category.split(" > ") if p.strip()), scope=str(t.entities_id),
            created_at=_dt(t.date or t.date_creation), updated_at=_dt(t.date_mod), url=self.ticket_url(t.id),
            comments=self._timeline(followups, solutions, people),
            outcomes=self._outcomes(solutions, followups, requester_ids),
        )

    def _person(self, actor: LegacyTicketUser) -> Person:
        if not actor.users_id:  # anonymous requester (mail collector): only an address
            email = (actor.alternative_email or "").strip() or None
            return Person(id=f"email:{email}" if email else "0", email=email)
        try:
            user = LegacyUser.model_validate(self.client.get_item("User", actor.users_id))
            emails = [LegacyUserEmail.model_validate(r)
                      for r in self.client.get_subitems("User", actor.users_id, "UserEmail")]
        except NotFound:
            return Person(id=str(actor.users_id), email=(actor.alternative_email or None))
        default = next((e.email for e in emails if e.is_default), None) or next((e.email for e in emails), None)
        return Person(id=str(user.id), name=user.display, login=user.name,
                      email=(actor.alternative_email or None) or default)

    def _timeline(self, followups: list[LegacyFollowup], solutions: list[LegacySolution],
                  people: Mapping[str, Person]) -> list[Comment]:
        def who(uid: int) -> Person | None:
            return people.get(str(uid)) or (Person(id=str(uid)) if uid else None)

        items: list[tuple[str, int, Comment]] = []
        for f in followups:
            items.append((f.date or f.date_creation or "", 0, _comment(f"ITILFollowup/{f.id}", who(f.users_id),
                                                                   f.content or "", f.is_private, "comment",
                                                                   f.date or f.date_creation)))
        for s in solutions:
            items.append((s.date_creation or "", 1, _comment(f"ITILSolution/{s.id}", who(s.users_id), s.content or "",
                                                             False, "solution", s.date_creation)))
        items.sort(key=lambda x: (x[0], x[1]))
        return [c for _, _, c in items]

    def _outcomes(self, solutions: list[LegacySolution], followups: list[LegacyFollowup],
                  requester_ids: set[str]) -> list[HelpdeskOutcome]:
        out: list[tuple[str, HelpdeskOutcome]] = []
        for s in solutions:
            if s.status not in (SOLUTION_ACCEPTED, SOLUTION_REFUSED):
                continue
            by_requester = bool(s.users_id_approval) and str(s.users_id_approval) in requester_ids
            if s.status == SOLUTION_ACCEPTED:
                out.append((s.date_approval or "", HelpdeskOutcome(
                    kind="solved", by_requester=by_requester, at=_dt(s.date_approval), detail="solution approved")))
            else:
                reason = _refusal_text(s, followups)
                out.append((s.date_approval or "", HelpdeskOutcome(
                    kind="not_solved", by_requester=by_requester, at=_dt(s.date_approval),
                    detail=f"solution refused: {reason}" if reason else "solution refused")))
        out.sort(key=lambda x: x[0])
        return [o for _, o in out]

    # ============================================================================ writing
    def _add(self, itemtype: str, item: dict[str, Any], ticket_id: str, marker: str) -> int:
        """``client.add``; when GLPI does not answer an add it received, read the ticket's
        ``itemtype`` rows back until one carrying ``marker`` shows (its id is returned) or
        ``unknown_write_wait_s`` passes (then WriteOutcomeUnknown: the retry re-reads and decides)."""
        try:
            return self.client.add(itemtype, item)
        except WriteOutcomeUnknown as e:
            return await_write(
                lambda: self._marked_row(ticket_id, itemtype, marker),
                e,
                wait_s=self.config.unknown_write_wait_s,
                what=f"glpi POST {itemtype} on ticket {ticket_id}",
                sleep=self._sleep,
            )

    def _marked_row(self, ticket_id: str, itemtype: str, marker: str) -> int | None:
        for row in self.client.get_subitems("Ticket", _id(ticket_id), itemtype):
            if marker in str(row.get("content") or "") and row.get("id") is not None:
                return int(row["id"])
        return None

    def post_comment(self, ticket_id: str, message: OutgoingMessage, *, private: bool) -> Comment:
        item: dict[str, Any] = {"itemtype": "Ticket", "items_id": _id(ticket_id), "content": render_html(message),
                                "is_private": 1 if private else 0}
        if private:
            item["_disablenotif"] = True  # no "new follow-up" e-mail for an agent note (``ITILFollowup::post_addItem``)
        return self._add_followup(ticket_id, item, private, message.marker)

    def _add_followup(self, ticket_id: str, item: dict[str, Any], private: bool, marker: str) -> Comment:
        new_id = self._add("ITILFollowup", item, ticket_id, marker)
        try:
            back = LegacyFollowup.model_validate(self.client.get_item("ITILFollowup", new_id))
        except (NotFound, ConnectorError) as e:
            if isinstance(e, TransientConnectorError):
                raise
            raise WriteNotApplied(f"GLPI accepted follow-up {new_id} on ticket {ticket_id} but it cannot be read "
                                  f"back ({e}); a private note needs the right 'See private followups'") from e
        if back.is_private != private:
            raise WriteNotApplied(f"GLPI stored follow-up {new_id} on ticket {ticket_id} as "
                                  f"{'private' if back.is_private else 'public'}, not as asked")
        log.info("glpi_followup_posted ticket=%s followup=%s private=%s", ticket_id, new_id, private,
                 extra={"event": "glpi_followup_posted"})
        return _comment(f"ITILFollowup/{back.id}", Person(id=str(back.users_id)) if back.users_id else None,
                        back.content or "", back.is_private, "comment", back.date or back.date_creation)

    def close_confirmed(self, ticket_id: str, message: OutgoingMessage) -> Ticket:
        t = self._legacy_ticket(ticket_id)
        if t.status == STATUS_CLOSED:
            return self.get_ticket(ticket_id)
        content = render_html(message)
        added_solution = False
        if t.status != STATUS_SOLVED:
            try:
                self._add("ITILSolution", {"itemtype": "Ticket", "items_id": t.id, "content": content}, ticket_id,
                          message.marker)
                added_solution = True
            except RejectedByHelpdesk:
                # Someone solved it between our read and our write ("already solved"): approve theirs.
                log.info("glpi_solution_refused ticket=%s: re-reading", t.id, extra={"event": "glpi_solution_refused"})
            t = self._legacy_ticket(ticket_id)
        if t.status == STATUS_SOLVED:
            # Entity "autoclose_delay" 0 closes at once (status 6): then there is nothing to approve.
            close_content = content if not added_solution else render_html(OutgoingMessage(
                marker=message.marker, paragraphs=["Solution approved by the requester (helpdesk-assist)."]))
            self._add("ITILFollowup", {"itemtype": "Ticket", "items_id": t.id, "add_close": 1,
                                       "content": close_content, "is_private": 0}, ticket_id, message.marker)
            t = self._legacy_ticket(ticket_id)
        if t.status != STATUS_CLOSED:
            raise WriteNotApplied(f"GLPI ticket {t.id} is in status {t.status}, not closed (6), after the approval")
        log.info("glpi_ticket_closed ticket=%s", t.id, extra={"event": "glpi_ticket_closed"})
        return self.get_ticket(ticket_id)

    def hand_back(self, ticket_id: str, message: OutgoingMessage) -> Ticket:
        """Back to the agents with ``message`` as a private note.

        On a solved ticket the note *is* the refusal: one follow-up with ``add_reopen: 1`` and
        ``is_private: 1``. GLPI only requires a non-empty content for ``add_reopen``
        (ITILFollowup::prepareInputForAdd) and reopens whatever the privacy (ParentStatus), so the
        reason stays agent-only and the ticket goes back to 2 (someone assigned) or 1, the solution
        refused. Otherwise a plain private note.
        """
        t = self._legacy_ticket(ticket_id)
        if t.status == STATUS_SOLVED:
            self._add_followup(ticket_id, {"itemtype": "Ticket", "items_id": t.id, "add_reopen": 1,
                                           "content": render_html(message), "is_private": 1,
                                           "_disablenotif": True}, private=True, marker=message.marker)
            after = self._legacy_ticket(ticket_id)
            if after.status in (STATUS_SOLVED, STATUS_CLOSED):
                raise WriteNotApplied(f"GLPI ticket {t.id} is still in status {after.status} after add_reopen")
        else:
            self.post_comment(ticket_id, message, private=True)
        log.info("glpi_ticket_handed_back ticket=%s from_status=%s", t.id, t.status,
                 extra={"event": "glpi_ticket_handed_back"})
        return self.get_ticket(ticket_id)

    # ============================================================================ scope
    def out_of_scope(self, ticket: Ticket) -> str | None:
        """Exactly the configured entities: a sub-entity is in scope only when it is listed too (GLPI's
        own way to keep the others out entirely is a profile limited to those entities)."""
        if not self.config.entities or ticket.scope in {str(e) for e in self.config.entities}:
            return None
        return (f"entity id {ticket.scope or '?'} is not in glpi.entities "
                f"({', '.join(str(e) for e in self.config.entities)})")

    # ============================================================================ webhooks
    def authenticate(self, headers: Mapping[str, str], body: bytes, args: Mapping[str, str]) -> None:
        webhook.authenticate(headers, body, secret=self.config.webhook_secret,
                             max_age_s=self.config.webhook_max_age_s)

    def challenge(self, args: Mapping[str, str]) -> str | None:
        """GLPI's CRA challenge: only GLPI's own token is answered (webhook.answer_cra_challenge)."""
        token = args.get("crc_token")
        if token is None:
            return None
        return webhook.answer_cra_challenge(self.config.webhook_secret, token)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[TicketEvent]:
        return webhook.parse(headers, body, source=self.name)

    # ============================================================================ polling
    def poll(self, since: str | None) -> tuple[list[TicketEvent], str | None]:
        """Tickets changed after ``since`` (GLPI server-local ``Y-m-d H:i:s``), via ``search/Ticket``.

        First run (``since`` None): no events, the watermark is the newest ``date_mod`` (we do not
        answer the backlog). Later runs query ``date_mod > since - overlap``; events are keyed by
        (id, date_mod) so the overlap is de-duplicated downstream.
        """
        if since is None:
            return [], self._newest_date_mod()
        try:
            floor = (datetime.strptime(since, DATE_FMT) - timedelta(seconds=self.config.poll_overlap_s)).strftime(
                DATE_FMT)
        except ValueError as e:
            raise RejectedByHelpdesk(f"GLPI poll watermark {since!r} is not 'YYYY-MM-DD HH:MM:SS'") from e
        events: list[TicketEvent] = []
        watermark = since
        start = 0
        while True:
            body, total = self.client.search("Ticket", _search_params(floor, start))
            page = SearchResponse.model_validate(body)
            for raw in page.data:
                event = self._poll_event(raw)
                if event is not None:
                    events.append(event)
                    watermark = max(watermark, str(raw.get("19")))
            start += len(page.data)
            if not page.data or start >= total:
                break
        log.info("glpi_poll_done since=%s events=%s watermark=%s", since, len(events), watermark,
                 extra={"event": "glpi_poll_done"})
        return events, watermark

    def _poll_event(self, raw: dict[str, Any]) -> TicketEvent | None:
        try:
            row = SearchTicketRow.model_validate(raw)
            changed = datetime.strptime(row.date_mod, DATE_FMT)
        except (ValidationError, ValueError, TypeError) as e:
            log.warning("glpi_poll_bad_row id=%s: %s", raw.get("2"), type(e).__name__,
                        extra={"event": "glpi_poll_bad_row"})
            return None
        kind: EventKind = "created" if row.date == row.date_mod else "updated"
        return TicketEvent(source=self.name, ticket_id=str(row.id), kind=kind,
                           delivery_key=f"glpi:poll:{row.id}:{row.date_mod}", occurred_at=changed,
                           vendor_event=f"poll/{kind}")

    def _newest_date_mod(self) -> str | None:
        params: list[tuple[str, str | int]] = [("forcedisplay[0]", 2), ("forcedisplay[1]", 19), ("sort", 19),
                                               ("order", "DESC"), ("range", "0-0")]
        body, _ = self.client.search("Ticket", params)
        rows = SearchResponse.model_validate(body).data
        # No ticket yet: start from the beginning, so the very first ticket is not missed (our clock
        # and GLPI's server-local time may differ).
        return str(rows[0]["19"]) if rows and rows[0].get("19") else EPOCH

    # ============================================================================ check
    def check(self) -> list[CheckResult]:
        results: list[CheckResult] = []
        url = self.config.url
        try:
            self.client.init_session()
        except TransientConnectorError as e:
            results.append(CheckResult.of(N_("API reachable"), False, N_(
                "Cannot reach the GLPI API at {url} ({error}). Check glpi.url (it ends with /apirest.php), the "
                "network, and that the API is enabled in GLPI under Setup > General > API."), url=url, error=e))
            return results
        except AuthenticationError as e:
            results.append(CheckResult.of(N_("API reachable"), True, N_("GLPI answers at {url}."), url=url))
            results.append(CheckResult.of(N_("Session"), False, _auth_advice(getattr(e, "code", ""), str(e))))
            return results
        except ConnectorError as e:
            results.append(CheckResult.of(N_("API reachable"), False, N_(
                "GLPI at {url} did not answer like the legacy REST API ({error}). Check glpi.url and that the API "
                "is enabled under Setup > General > API."), url=url, error=e))
            return results
        results.append(CheckResult.of(N_("API reachable"), True, N_("GLPI answers at {url}."), url=url))
        try:
            uid, login = self.client.whoami()
        except ConnectorError:
            uid, login = "", ""
        if uid and self._bot_id is None:
            self._bot_id = uid
        results.append(CheckResult.of(N_("Session"), True, (
            N_("The user token and App-Token are accepted; connected as '{login}' (user id {uid}).") if uid
            else N_("The user token and App-Token are accepted.")), login=login, uid=uid))
        try:
            profile = ActiveProfile.model_validate(self.client.get_active_profile())
        except (ConnectorError, ValidationError) as e:
            results.append(CheckResult.of(N_("Rights"), False, N_("Could not read the active profile: {error}"),
                                          error=e))
            return results
        results.extend(_rights_results(profile))
        if self.config.create_tickets:
            results.extend(self._creation_results(profile))
        results.append(self._webhook_result())
        return results

    def _webhook_result(self) -> CheckResult:
        if self.config.webhook_secret:
            return CheckResult.of(N_("Webhook secret"), True, N_("A webhook secret is set: GLPI 11 webhooks "
                                  "signed with it are accepted."))
        if self.config.poll:
            return CheckResult.of(N_("Webhook secret"), True, N_("Warning: no webhook secret, so GLPI webhooks "
                                  "are refused; polling is on, so new tickets are still found (with a delay)."))
        return CheckResult.of(N_("Webhook secret"), False, N_("No webhook secret and polling is off: nothing "
                              "tells the assistant about new tickets. Copy the secret from GLPI 11 Setup > Webhooks > "
                              "your webhook > Security into glpi.webhook_secret, or turn on glpi.poll (GLPI 10)."))


    # ============================================================================ creating tickets
    def find_requester(self, login_or_email: str) -> Person | None:
        """The active GLPI user with this login (search option 1) or e-mail address (option 5, any of
        the user's addresses), through ``search/User``; None when there is none.

        GLPI's ``contains`` with ``^value$`` is an exact, case-insensitive match (Search
        makeTextSearchValue); the rows are checked again here, since LIKE treats ``%`` as a wildcard.
        Needs the Users READ right (``User::canView``), as check() says.
        """
        value = clean_lookup(login_or_email)
        by_email = "@" in value
        params: list[tuple[str, str | int]] = [
            ("criteria[0][field]", OPT_USER_EMAIL if by_email else OPT_USER_LOGIN),
            ("criteria[0][searchtype]", "contains"), ("criteria[0][value]", f"^{value}$"),
            ("criteria[1][link]", "AND"), ("criteria[1][field]", OPT_USER_ACTIVE),
            ("criteria[1][searchtype]", "equals"), ("criteria[1][value]", 1), ("range", "0-19")]
        params += [(f"forcedisplay[{i}]", opt) for i, opt in enumerate(
            (OPT_USER_ID, OPT_USER_LOGIN, OPT_USER_EMAIL, OPT_USER_FIRSTNAME, OPT_USER_REALNAME))]
        try:
            body, _ = self.client.search("User", params)
        except PermissionDenied as e:
            raise PermissionDenied(f"GLPI does not let the assistant's account search users ({e}): tick 'Read' for "
                                   "Users in Administration > Profiles > (its profile) > Administration") from e
        wanted = value.casefold()
        found: list[SearchUserRow] = []
        for raw in SearchResponse.model_validate(body).data:
            try:
                row = SearchUserRow.model_validate(raw)
            except ValidationError:
                log.warning("glpi_user_search_bad_row", extra={"event": "glpi_user_search_bad_row"})
                continue
            keys = [e.casefold() for e in row.emails] if by_email else [row.login.casefold()]
            if wanted in keys:
                found.append(row)
        if not found:
            log.info("glpi_requester_not_found by=%s", "email" if by_email else "login",
                     extra={"event": "glpi_requester_not_found"})
            return None
        if len(found) > 1:
            raise RejectedByHelpdesk(f"{len(found)} active GLPI users have this e-mail address: ask for the "
                                     "login instead")
        person = self._person(LegacyTicketUser(users_id=found[0].id, type=REQUESTER))
        return person.model_copy(update={"email": value}) if by_email else person

    def find_created(self, new: NewTicket) -> Ticket | None:
        """The newest ticket whose description carries ``new.marker`` and whose requester is
        ``new.requester`` (``search/Ticket`` on options 21 and 4), read in full; None if none."""
        params: list[tuple[str, str | int]] = [
            ("criteria[0][field]", OPT_TICKET_CONTENT), ("criteria[0][searchtype]", "contains"),
            ("criteria[0][value]", new.marker)]
        uid = _glpi_user_id(new.requester)
        if uid:
            params += [("criteria[1][link]", "AND"), ("criteria[1][field]", OPT_TICKET_REQUESTER),
                       ("criteria[1][searchtype]", "equals"), ("criteria[1][value]", uid)]
        params += [("forcedisplay[0]", OPT_TICKET_ID), ("forcedisplay[1]", OPT_TICKET_DATE),
                   ("sort", OPT_TICKET_ID), ("order", "DESC"), ("range", "0-9")]
        body, _ = self.client.search("Ticket", params)
        for raw in SearchResponse.model_validate(body).data:
            ticket_id = str(raw.get(str(OPT_TICKET_ID)) or "")
            if not ticket_id.isdigit():
                continue
            ticket = self.get_ticket(ticket_id)
            if new.marker in ticket.body and _same_person(ticket.requester, new.requester):
                return ticket
        return None

    def create_ticket(self, new: NewTicket) -> Ticket:
        """``POST Ticket`` with the person as requester (``_users_id_requester``; a person without a
        GLPI account, ``email:...``, as GLPI's anonymous requester with an alternative address, the way
        its mail collector does), then read back. Idempotent through :meth:`find_created`."""
        existing = self.find_created(new)
        if existing is not None:
            log.info("glpi_ticket_already_created ticket=%s", existing.id,
                     extra={"event": "glpi_ticket_already_created"})
            return existing
        item: dict[str, Any] = {"name": new.subject, "content": render_html(new.as_message())}
        uid = _glpi_user_id(new.requester)
        if uid:
            item["_users_id_requester"] = uid
        elif new.requester.email:
            item["_users_id_requester"] = 0
            item["_users_id_requester_notif"] = {"use_notification": [1], "alternative_email": [new.requester.email]}
        else:
            raise NotFound("the requester has neither a GLPI account nor an e-mail address")
        if self.config.create_entity_id is not None:
            item["entities_id"] = self.config.create_entity_id
        try:
            new_id = self.client.add("Ticket", item)
        except RejectedByHelpdesk as e:
            raise self._explain_refused_ticket(e) from e
        ticket = self.get_ticket(str(new_id))
        if not _same_person(ticket.requester, new.requester):
            got = ticket.requester.id if ticket.requester else "nobody"
            raise WriteNotApplied(f"GLPI created ticket {new_id} but its requester is {got}, not {new.requester.id}: "
                                  "a business rule (Administration > Rules > Business rules for tickets) may have "
                                  "changed it; fix the ticket in GLPI")
        log.info("glpi_ticket_created ticket=%s", new_id, extra={"event": "glpi_ticket_created"})
        return ticket

    def _explain_refused_ticket(self, error: RejectedByHelpdesk) -> ConnectorError:
        """GLPI answers a missing right with 400 ERROR_GLPI_ADD and a translated sentence
        (API::createItems), so the profile is read to tell a missing right from a business refusal."""
        try:
            profile = ActiveProfile.model_validate(self.client.get_active_profile())
            entities = {int(e.get("id", -1)) for p in self.client.get_my_profiles() if p.get("id") == profile.id
                        for e in p.get("entities") or [] if isinstance(e, dict)}
        except (ConnectorError, ValidationError, TypeError, ValueError):
            return error
        where = f"Administration > Profiles > {profile.name or '(the profile)'}"
        if not profile.ticket & RIGHT_TICKET_CREATE:
            return PermissionDenied(f"GLPI refused to create the ticket: profile '{profile.name}' may not create "
                                    f"tickets. Tick 'Create' for Tickets in {where} > Assistance ({error})")
        entity = self.config.create_entity_id
        if entity is not None and entity not in entities:
            return PermissionDenied(f"GLPI refused to create the ticket in entity {entity} (glpi.create_entity_id): "
                                    f"the assistant's profile '{profile.name}' is not given that entity "
                                    f"(Administration > Users > (the assistant) > Authorizations) ({error})")
        return error

    def _creation_results(self, profile: ActiveProfile) -> list[CheckResult]:
        where = f"Administration > Profiles > {profile.name or '(the profile)'}"
        results = [CheckResult.of(
            N_("Create tickets"), bool(profile.ticket & RIGHT_TICKET_CREATE),
            (N_("Profile '{profile}' can create tickets on people's behalf.") if profile.ticket
             & RIGHT_TICKET_CREATE else N_("Profile '{profile}' cannot create tickets, so 'open a ticket' "
                                           "fails: tick 'Create' for Tickets in {where} > Assistance.")),
            profile=profile.name, where=where)]
        entity = self.config.create_entity_id
        if entity is not None:
            try:
                entities = {int(e.get("id", -1)): bool(e.get("is_recursive")) for p in self.client.get_my_profiles()
                            if p.get("id") == profile.id for e in p.get("entities") or [] if isinstance(e, dict)}
            except (ConnectorError, TypeError, ValueError) as e:
                results.append(CheckResult.of(N_("Ticket entity"), False, N_("Could not read the entities: {error}"),
                                              error=e))
                return results
            if entity in entities:
                results.append(CheckResult.of(N_("Ticket entity"), True,
                                              N_("Tickets are opened in entity {entity}, which the profile has."),
                                              entity=entity))
            elif any(entities.values()):
                results.append(CheckResult.of(N_("Ticket entity"), True, N_(
                    "Warning: entity {entity} is not one of the profile's own entities; it is allowed only if it "
                    "lies below one the profile has recursively."), entity=entity))
            else:
                results.append(CheckResult.of(N_("Ticket entity"), False, N_(
                    "Entity {entity} (glpi.create_entity_id) is not among the profile's entities: give it in "
                    "Administration > Users > (the assistant) > Authorizations, or fix glpi.create_entity_id."),
                    entity=entity))
        return results


# ================================================================================ helpers
def _glpi_user_id(person: Person) -> int:
    """The GLPI user id of a requester, 0 for a person known only by address (``email:...``)."""
    return int(person.id) if person.id.isdigit() else 0


def _same_person(found: Person | None, wanted: Person) -> bool:
    if found is None:
        return False
    if _glpi_user_id(wanted):
        return found.id == wanted.id
    return bool(found.email and wanted.email and found.email.casefold() == wanted.email.casefold())


def _id(ticket_id: str | int) -> int:
    try:
        return int(str(ticket_id).strip())
    except ValueError as e:
        raise NotFound(f"{ticket_id!r} is not a GLPI ticket id") from e


def _dt(value: str | None) -> datetime | None:
    """GLPI's server-local ``Y-m-d H:i:s`` as a naive datetime (the API does not say the zone)."""
    if not value:
        return None
    try:
        return datetime.strptime(value[:19], DATE_FMT)
    except ValueError:
        return None


def _comment(cid: str, author: Person | None, content: str, private: bool, kind: str, when: str | None) -> Comment:
    text = html_to_text(content)
    return Comment(id=cid, author=author, body=text, is_private=private, kind=kind,  # type: ignore[arg-type]
                   created_at=_dt(when), marker=find_marker(text))


def _refusal_text(solution: LegacySolution, followups: list[LegacyFollowup]) -> str:
    """The follow-up that refused ``solution``: same user as ``users_id_approval``, written by the same
    request as ``date_approval`` (GLPI stores no link between them)."""
    at = _dt(solution.date_approval)
    if at is None:
        return ""
    candidates = [f for f in followups if f.users_id == solution.users_id_approval and _dt(f.date or f.date_creation)]
    best = min(candidates, key=lambda f: abs(_dt(f.date or f.date_creation) - at), default=None)  # type: ignore[operator]
    if best is None or abs(_dt(best.date or best.date_creation) - at) > _REFUSAL_WINDOW:  # type: ignore[operator]
        return ""
    return html_to_text(best.content or "")


def _search_params(floor: str, start: int) -> list[tuple[str, str | int]]:
    params: list[tuple[str, str | int]] = [
        ("criteria[0][field]", 19), ("criteria[0][searchtype]", "morethan"), ("criteria[0][value]", floor)]
    params += [(f"forcedisplay[{i}]", opt) for i, opt in enumerate((2, 1, 12, 15, 19))]
    params += [("sort", 19), ("order", "ASC"), ("range", f"{start}-{start + POLL_PAGE - 1}")]
    return params


def _auth_advice(code: str, message: str) -> Text:
    advice = {
        "ERROR_GLPI_LOGIN_USER_TOKEN": N_("GLPI refused the user token. In GLPI open Administration > Users > (the "
        "assistant's user) > Remote access keys, regenerate the API token and copy it into glpi.user_token."),
        "ERROR_GLPI_LOGIN": N_("GLPI refused the login. Use the assistant user's API token (Administration > Users > "
        "(user) > Remote access keys) in glpi.user_token."),
        "ERROR_LOGIN_PARAMETERS_MISSING": N_("No user token was sent: set glpi.user_token to the API token from "
        "Administration > Users > (the assistant's user) > Remote access keys."),
        "ERROR_APP_TOKEN_PARAMETERS_MISSING": N_("GLPI requires an App-Token for this API client. Copy it from "
        "Setup > General > API > (the API client) into glpi.app_token."),
        "ERROR_WRONG_APP_TOKEN_PARAMETER": N_("The App-Token does not match the API client. Copy it again from "
        "Setup > General > API > (the API client) into glpi.app_token."),
        "ERROR_NOT_ALLOWED_IP": N_("No active API client allows this machine's IP address. Add or fix one under "
        "Setup > General > API (IPv4 range)."),
        "ERROR_LOGIN_WITH_CREDENTIALS_DISABLED": N_("Use a user token: login with a password is disabled "
        "(Setup > General > API)."),
    }.get(code)
    if advice:
        return Text.of(advice)
    return Text.of(N_("GLPI refused to open a session: {error}. Check glpi.user_token and glpi.app_token."),
                   error=message)


def _rights_results(profile: ActiveProfile) -> list[CheckResult]:
    where = f"Administration > Profiles > {profile.name or '(the profile)'}"
    checks = [
        (N_("Read tickets"), bool(profile.ticket & RIGHT_TICKET_READALL),
         N_("Profile '{profile}' can see all tickets."),
         N_("Profile '{profile}' cannot see all tickets: tick 'See all tickets' in {where} > Assistance > Tickets.")),
        (N_("Add follow-ups"), bool(profile.followup & RIGHT_FOLLOWUP_ADDALL),
         N_("Profile '{profile}' can add follow-ups to all tickets."),
         N_("Profile '{profile}' cannot add follow-ups to all tickets: tick 'Add to all tickets' under "
            "Followups in {where} > Assistance.")),
        (N_("See private follow-ups"), bool(profile.followup & RIGHT_FOLLOWUP_SEEPRIVATE),
         N_("Profile '{profile}' can see private follow-ups (needed to confirm agent notes stayed private)."),
         N_("Profile '{profile}' cannot see private follow-ups, so agent notes cannot be confirmed: tick "
            "'See private ones' under Followups in {where} > Assistance.")),
        (N_("Add solutions"), bool(profile.ticket & RIGHT_TICKET_UPDATE),
         N_("Profile '{profile}' can solve and close tickets."),
         N_("Profile '{profile}' cannot solve tickets, so confirmed tickets cannot be closed: tick 'Update' "
            "for Tickets in {where} > Assistance.")),
        (N_("See requesters"), bool(profile.user & RIGHT_USER_READ),
         N_("Profile '{profile}' can read users (requesters' names and e-mail addresses)."),
         N_("Profile '{profile}' cannot read users, so requesters' e-mail addresses are unknown: tick 'Read' "
            "for Users in {where} > Administration.")),
    ]
    return [CheckResult.of(name, ok, good if ok else bad, profile=profile.name, where=where)
            for name, ok, good, bad in checks]


# ================================================================================ HTML
def _safe_url(url: str) -> bool:
    return url.strip().lower().startswith(_SAFE_SCHEMES)


def _text_html(text: str) -> str:
    return "<br>".join(html.escape(line, quote=True) for line in text.split("\n"))


def render_html(message: OutgoingMessage) -> str:
    """GLPI rich text for ``message``. Every text is escaped; links are ``<a href>`` with escaped URLs
    (http, https and mailto only: GLPI strips other schemes anyway: ``RichText::getSafeHtml``)."""
    parts: list[str] = []
    if message.heading:
        parts.append(f"<p><strong>{_text_html(message.heading)}</strong></p>")
    parts += [f"<p>{_text_html(p)}</p>" for p in message.paragraphs if p.strip()]
    for entry in message.entries:
        parts.append(f"<p><strong>{_text_html(entry.title)}</strong><br>{_text_html(entry.text)}</p>")
    if message.facts:
        items = "".join(f"<li>{_text_html(label)}: {_text_html(value)}</li>" for label, value in message.facts)
        parts.append(f"<ul>{items}</ul>")
    links = [f'<a href="{html.escape(link.url.strip(), quote=True)}">{_text_html(link.label)}</a>'
             if _safe_url(link.url) else f"{_text_html(link.label)}: {_text_html(link.url)}" for link in message.links]
    if links:
        parts.append("<p>" + " · ".join(links) + "</p>")
    if message.footer:
        parts.append(f"<p><small>{_text_html(message.footer)}</small></p>")
    parts.append(f"<p><small>ref {html.escape(message.marker)}</small></p>")
    return "".join(parts)


class _TextExtractor(HTMLParser):
    _BLOCKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre",
                         "ul", "ol", "table", "hr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._href: list[str | None] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in self._BLOCKS:
            self.out.append("\n")
        if tag == "li":
            self.out.append("- ")
        if tag == "a":
            self._href.append(dict(attrs).get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag == "a" and self._href:
            href = self._href.pop()
            if href and _safe_url(href) and not "".join(self.out[-1:]).strip().endswith(href):
                self.out.append(f" ({href})")
        elif tag in self._BLOCKS:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.out.append(data)


def html_to_text(content: str) -> str:
    """Plain text of GLPI rich text (blocks become lines; link targets kept in parentheses)."""
    if not content:
        return ""
    if "&lt;" in content and "<" not in content:  # sanitized output (header not honoured)
        content = html.unescape(content)
    parser = _TextExtractor()
    parser.feed(content)
    parser.close()
    text = "".join(parser.out).replace("\xa0", " ")
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
