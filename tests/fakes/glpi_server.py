"""A fake GLPI: the legacy REST API (``apirest.php``) on a real HTTP server, plus GLPI 11 webhook deliveries.

GLPI cannot be installed on the dev machine (PHP + MariaDB), so the connector and the pipeline are
tested against this fake. Every rule below comes from GLPI's source and API documentation (``apirest.md``,
``src/Api/API.php``, ``src/ITILFollowup.php``, ``src/ITILSolution.php``, ``src/Features/ParentStatus.php``,
``src/Webhook.php``; the bracketed numbers are the sections of the team's protocol notes). Where a fact
was inferred from the source rather than seen on a live GLPI ([INF]/[VERIFY]), the fake does what the
source suggests, and the rule is only as good as that reading (the README lists what to verify).

What it enforces
- API client App-Token on every call, header ``App-Token`` or query ``app_token``: missing ->
  400 ``ERROR_APP_TOKEN_PARAMETERS_MISSING``, wrong -> 400 ``ERROR_WRONG_APP_TOKEN_PARAMETER`` [1.1, 1.11].
- ``GET initSession`` with ``Authorization: user_token <t>`` (or query ``user_token``): nothing ->
  400 ``ERROR_LOGIN_PARAMETERS_MISSING``; ``Basic`` -> 400 ``ERROR_LOGIN_WITH_CREDENTIALS_DISABLED``
  (credentials login is off, as on a hardened instance); unknown token -> 401
  ``ERROR_GLPI_LOGIN_USER_TOKEN``; ok -> 200 ``{"session_token": ...}`` [1.1].
- ``Session-Token`` on every other call: missing -> 400 ``ERROR_SESSION_TOKEN_MISSING``, unknown or
  expired (:meth:`FakeGLPI.expire_sessions`) -> 401 ``ERROR_SESSION_TOKEN_INVALID``; ``killSession`` [1.1].
- Errors are the 2-element array ``["ERROR_CODE", "message; view documentation ..."]`` [1.11].
- Content is HTML-encoded on output unless ``X-GLPI-Sanitized-Content: false`` is sent (GLPI 10) [1.1].
- Profiles and rights with GLPI's bit values: ``ticket`` (READMY 1, UPDATE 2, CREATE 4, READALL 1024),
  ``followup`` (SEEPUBLIC 1, ADDMYTICKET 4, ADDALLTICKET 4096, SEEPRIVATE 8192), ``user`` (READ 1).
  A "self-service" requester sees only its own tickets and no private follow-up; a "technician"
  bot sees everything. A profile with no follow-up ADD right at all gets 403 ``ERROR_RIGHT_MISSING``
  on ``POST ITILFollowup``; one that may add only on its own tickets gets 400 ``ERROR_GLPI_ADD``
  (GLPI's per-item ``can()`` check) [1.5, 1.11]. ``POST ITILSolution`` needs ticket UPDATE [INF].
- Reading an item the profile may not see -> 403 ``ERROR_RIGHT_MISSING``; absent -> 404
  ``ERROR_ITEM_NOT_FOUND`` [1.11].
- ITILFollowup [1.4, 1.5, 1.8, 4]: empty content refused (400 ``ERROR_GLPI_ADD``) unless
  ``add_close``/``add_reopen``; ``add_close`` empty content becomes "Solution approved";
  ``add_reopen`` needs a reason; ``is_private`` defaults to 0; ``_disablenotif`` suppresses the
  ``add_followup`` notification (recorded in :attr:`FakeGLPI.notifications`).
  ``add_close`` on a SOLVED ticket -> 6 CLOSED, ``closedate``, last solution ACCEPTED(3) with
  ``users_id_approval``/``date_approval``; on a ticket that is not solved it is a plain follow-up.
  ``add_reopen`` on a reopenable ticket (4, 5, 6) -> 2 if an assigned actor exists, else 1.
  GLPI's trap: any follow-up by a requester on a SOLVED ticket reopens it, and any follow-up on a
  WAITING (4) ticket reopens it (ParentStatus) [4, 1.4].
  Leaving SOLVED/CLOSED for an open status marks the last solution REFUSED(4) with
  ``users_id_approval``/``date_approval`` (CommonITILObject::post_updateItem) [1.8].
- ITILSolution [1.6]: refused 400 ``ERROR_GLPI_ADD`` "The item is already solved..." on a 5/6
  ticket; else ticket -> 5 SOLVED + solution WAITING(2), or straight to 6 CLOSED + ACCEPTED(3) when
  the entity ``autoclose_delay`` is 0.
- ``POST`` answers 201 ``{"id": N, "message": ""}`` + ``Location`` [1.2].
- Sub-items (``Ticket/N/Ticket_User|ITILFollowup|ITILSolution``, ``User/N/UserEmail``) and
  ``search/Ticket`` page with ``range`` (default 0-49): 206 + ``Content-Range: a-b/total`` when
  partial, 400 ``ERROR_RANGE_EXCEED_TOTAL`` past the end [1.2, 1.10].
- ``search/Ticket``: criteria on options 1, 2, 12, 15, 19 with ``morethan`` (strict) / ``lessthan`` /
  ``equals`` / ``contains``, ``forcedisplay``, ``sort``/``order``; rows keyed by option id [1.10].
- ``getMyProfiles``, ``getActiveProfile`` (the session's active profile with its rights),
  ``getFullSession`` [1.1].
- ``add_keys_names[]`` and ``expand_dropdowns`` on ``GET Ticket/N`` [1.2].
- ``POST Ticket`` (opening a ticket on someone's behalf), as GLPI 10's ``API::createItems`` and
  ``Ticket``/``CommonITILObject::prepareInputForAdd``/``post_addItem`` do it (src/Api/API.php
  04d12f8, src/Ticket.php 0000378a, src/CommonITILObject.php, read through the code index):
  ``$item->can(-1, CREATE, $input)`` fails (no ticket CREATE right, or an entity outside the
  profile's) -> 400 ``ERROR_GLPI_ADD`` "You don't have permission to perform this action." (not
  403: createItems reports it as a failed add); no ``entities_id`` -> the session's active entity;
  ``users_id_recipient`` (the writer) = the session's user; an empty ``name`` is built from the
  content (70 characters); mandatory fields of the ticket template missing -> 400 ``ERROR_GLPI_ADD``
  "Mandatory fields are not filled. Please correct: ..." (:attr:`FakeGLPI.mandatory_ticket_fields`);
  an invalid ``_users_id_requester_notif[alternative_email]`` -> 400 "Invalid email address ...";
  business rules may change the requester (:attr:`FakeGLPI.ticket_rule`), which clears the
  mail-collector address; ``type`` defaults to the entity's ``tickettype`` (Incident, 1).
  post_addItem adds one ``Ticket_User`` requester row (type 1) per ``_users_id_requester`` with the
  ``_users_id_requester_notif`` values at the same index, and skips a requester 0 without an
  ``alternative_email`` (the mail collector's anonymous requester: ``_users_id_requester: 0``,
  ``_users_id_requester_notif: {use_notification: [1], alternative_email: [addr]}``,
  src/MailCollector.php buildTicket). Without ``_users_id_requester`` the session's user is the
  requester (GLPI 9.5's "No Auto set Import for external source" rule [INF for 10]). The "new"
  notification is recorded unless ``_disablenotif``.
- ``search/User`` on options 1 (login), 2 (id), 5 (e-mail, any of the user's UserEmail rows),
  8 (active), 9 (first name), 34 (last name): needs the User READ right (``User::canView``), else
  403 ``ERROR_RIGHT_MISSING`` (``API::searchItems`` -> messageRightError); option 5 has several values
  per user and comes back as a list when there are several (searchItems "manage multiple values").
  ``search/Ticket`` also on options 4 (requester: ``equals`` a user id) and 21 (description).
  ``contains`` honours GLPI's anchors: ``^x`` starts with, ``x$`` ends with, ``^x$`` equals
  (Search ``makeTextSearchValue``), case-insensitively like MySQL's collation.
- :meth:`FakeGLPI.webhook_delivery` builds a GLPI 11 delivery from the fake's own state: HL-API
  shaped ``{"item", "event", "parent_item"}`` body, pretty-printed the way PHP ``json_encode``
  (``JSON_PRETTY_PRINT``) does, ``X-GLPI-signature`` = hex HMAC-SHA256(secret, body + timestamp),
  ``X-GLPI-timestamp``, and no Content-Type [3.1]; :meth:`FakeGLPI.cra_challenge` builds the
  ``crc_token`` GLPI sends to check a webhook URL and the only answer it accepts [3.1].

What it does not enforce (so a test passing here proves nothing about it)
- Ticket templates beyond a list of mandatory input keys; SLAs, auto-assignment, ITIL categories'
  incident/request flags; the ``check_delegatee`` of the self-service form (not used by the API).
- The life-cycle matrix per profile, entities and recursion (only a flat set of allowed entity ids), ``changeActiveEntities``,
  ``changeActiveProfile``, IP ranges of API clients, bulk ``input`` arrays, PUT/PATCH/DELETE, the
  HL API itself (only its shapes in webhooks), ``with_logs``, documents, tasks, validations,
  notification e-mails (only recorded), ``set followup tech`` auto-assignment, the mail collector.
- Which HL fields GLPI 11 really puts in each schema beyond those we read in ITILController [VERIFY].

Test knobs: :attr:`FakeGLPI.entities`, :attr:`FakeGLPI.mandatory_ticket_fields`,
:attr:`FakeGLPI.ticket_rule`, :attr:`FakeGLPI.drop_privacy` (store every follow-up public, as a silently misbehaving
server would), :attr:`FakeGLPI.honour_add_close` (False: ``add_close``/``add_reopen`` ignored), :meth:`FakeGLPI.fail_next` (answer the next requests with an error),
:attr:`FakeGLPI.outage` (answer every request with this HTTP status until set back to None),
:attr:`FakeGLPI.search_row_hook` (corrupt search rows), :meth:`FakeGLPI.set_time`/:meth:`advance`.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from requests.structures import CaseInsensitiveDict
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

# --- GLPI constants (CommonITILActor/Object/Validation; ITILFollowup/Ticket right bits) -----------------
INCOMING, ASSIGNED, PLANNED, WAITING, SOLVED, CLOSED = 1, 2, 3, 4, 5, 6
STATUS_NAMES = {1: "New", 2: "Processing (assigned)", 3: "Processing (planned)", 4: "Pending", 5: "Solved", 6: "Closed"}
REQUESTER, ASSIGN, OBSERVER = 1, 2, 3
VALIDATION_NONE, VALIDATION_WAITING, VALIDATION_ACCEPTED, VALIDATION_REFUSED = 1, 2, 3, 4
AUTOCLOSE_NEVER = -10

TICKET_READMY, TICKET_UPDATE, TICKET_CREATE, TICKET_READALL = 1, 2, 4, 1024
FOLLOWUP_SEEPUBLIC, FOLLOWUP_UPDATEMY, FOLLOWUP_ADDMYTICKET = 1, 2, 4
FOLLOWUP_UPDATEALL, FOLLOWUP_ADDGROUPTICKET, FOLLOWUP_ADDALLTICKET, FOLLOWUP_SEEPRIVATE = 1024, 2048, 4096, 8192
USER_READ = 1

SELF_SERVICE = "self-service"
TECHNICIAN = "technician"

DEFAULT_PROFILES: dict[str, dict[str, Any]] = {
    SELF_SERVICE: {
        "id": 1,
        "name": "Self-Service",
        "interface": "helpdesk",
        "rights": {"ticket": TICKET_READMY | TICKET_CREATE, "followup": FOLLOWUP_SEEPUBLIC | FOLLOWUP_ADDMYTICKET,
                   "user": 0},
    },
    TECHNICIAN: {
        "id": 6,
        "name": "Technician",
        "interface": "central",
        "rights": {
            "ticket": TICKET_READMY | TICKET_UPDATE | TICKET_CREATE | TICKET_READALL,
            "followup": FOLLOWUP_SEEPUBLIC | FOLLOWUP_UPDATEMY | FOLLOWUP_ADDMYTICKET | FOLLOWUP_UPDATEALL
            | FOLLOWUP_ADDGROUPTICKET | FOLLOWUP_ADDALLTICKET | FOLLOWUP_SEEPRIVATE,
            "user": USER_READ,
        },
    },
}

DATE_FMT = "%Y-%m-%d %H:%M:%S"


class _APIError(Exception):
    def __init__(self, http: int, code: str, message: str) -> None:
        super().__init__(code)
        self.http, self.code, self.message = http, code, message


@dataclass
class LoggedRequest:
    method: str
    #: Path below ``apirest.php``, e.g. ``/ITILFollowup`` or ``/Ticket/3/Ticket_User``.
    path: str
    #: Case-insensitive, as HTTP headers are.
    headers: CaseInsensitiveDict[str]
    json: Any
    #: Query arguments in order, e.g. ``[("criteria[0][field]", "19"), ...]``.
    args: list[tuple[str, str]]
    status: int = 0


@dataclass
class FakeUser:
    id: int
    name: str
    profile: str
    user_token: str
    realname: str = ""
    firstname: str = ""
    emails: list[tuple[str, bool]] = field(default_factory=list)
    is_active: bool = True

    @property
    def display(self) -> str:
        full = f"{self.realname} {self.firstname}".strip()
        return full or self.name


class FakeGLPI:
    """The fake GLPI server. Use as a context manager, or :meth:`start`/:meth:`stop`."""

    def __init__(self, *, app_token: str | None = None, autoclose_delay: int = AUTOCLOSE_NEVER) -> None:
        self.app_token: str = app_token if app_token is not None else "app-" + secrets.token_hex(8)
        self.autoclose_delay = autoclose_delay
        self.drop_privacy = False
        #: False: ``add_close``/``add_reopen`` are stored but have no effect (the API passing them
        #: through to ``ITILFollowup::add()`` is inferred from the source, not seen live).
        self.honour_add_close = True
        self.search_row_hook: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        #: Entities the profiles may create tickets in (GLPI checks the input's entity in can()).
        self.entities: set[int] = {0}
        #: Input keys the ticket template makes mandatory, e.g. ``["itilcategories_id"]``.
        self.mandatory_ticket_fields: list[str] = []
        #: A business rule run on a new ticket's input (RuleTicketCollection ONADD): may change it.
        self.ticket_rule: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.request_log: list[LoggedRequest] = []
        #: ``(event, ticket_id, followup_id)`` for each notification GLPI would send.
        self.notifications: list[tuple[str, int, int]] = []
        self.profiles: dict[str, dict[str, Any]] = json.loads(json.dumps(DEFAULT_PROFILES))
        self.users: dict[int, FakeUser] = {}
        self.tickets: dict[int, dict[str, Any]] = {}
        self.ticket_users: list[dict[str, Any]] = []
        self._followups: list[dict[str, Any]] = []
        self._solutions: list[dict[str, Any]] = []
        self.categories: dict[int, dict[str, Any]] = {}
        #: Entities by id (0: the root); tickets live in one. Recursion and per-profile entity
        #: restrictions are not enforced: the bot sees every entity.
        self.entities: dict[int, str] = {0: "Root entity"}
        self.sessions: dict[str, int] = {}
        self._failures: list[tuple[int, list[Any], str | None]] = []
        #: An outage: every request is answered with this HTTP status (e.g. 503) while it is set.
        self.outage: int | None = None
        self._ids = {k: itertools.count(1) for k in ("ticket", "tu", "fup", "sol", "cat", "email")}
        self._user_ids = itertools.count(2)  # 0: nobody/anonymous, 1: the system user "glpi"
        self._now: datetime | None = None
        self._lock = threading.RLock()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port = 0
        # The two standard accounts.
        self.bot_token = "bot-" + secrets.token_hex(8)
        self.requester_token = "req-" + secrets.token_hex(8)
        self.bot_id = self.add_user("helpdesk-assist", TECHNICIAN, token=self.bot_token, email="bot@example.org",
                                    realname="Assistant", firstname="Helpdesk")
        self.requester_id = self.add_user("jdoe", SELF_SERVICE, token=self.requester_token, email="jdoe@example.org",
                                          realname="Doe", firstname="John")

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeGLPI:
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-glpi", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeGLPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The legacy API base, ``http://127.0.0.1:PORT/apirest.php``."""
        return f"{self.web_url}/apirest.php"

    # ------------------------------------------------------------------ clock
    def now(self) -> datetime:
        return self._now if self._now is not None else datetime.now().replace(microsecond=0)

    def _stamp(self) -> str:
        return self.now().strftime(DATE_FMT)

    def set_time(self, when: str | datetime) -> None:
        """Freeze the server clock (server-local time, like GLPI's ``Y-m-d H:i:s``)."""
        self._now = datetime.strptime(when, DATE_FMT) if isinstance(when, str) else when

    def advance(self, seconds: float) -> None:
        self._now = self.now() + timedelta(seconds=seconds)

    # ------------------------------------------------------------------ knobs
    def expire_sessions(self) -> None:
        """Forget every session, as when PHP garbage-collects them: the next call gets 401."""
        with self._lock:
            self.sessions.clear()

    def fail_next(self, status: int, code: str = "ERROR", message: str = "failure injected by the test",
                  *, times: int = 1, path_contains: str | None = None) -> None:
        """Answer the next ``times`` matching requests with ``status`` and ``[code, message]``."""
        with self._lock:
            for _ in range(times):
                self._failures.append((status, [code, message], path_contains))

    def set_rights(self, profile: str, **rights: int) -> None:
        """Replace rights of a profile, e.g. ``set_rights("technician", followup=0)``."""
        with self._lock:
            self.profiles[profile]["rights"].update(rights)

    def add_profile(self, key: str, name: str, interface: str = "central", **rights: int) -> None:
        with self._lock:
            pid = max(p["id"] for p in self.profiles.values()) + 1
            self.profiles[key] = {"id": pid, "name": name, "interface": interface,
                                  "rights": {"ticket": 0, "followup": 0, "user": 0, **rights}}

    # ------------------------------------------------------------------ setup helpers
    def add_user(self, name: str, profile: str, *, token: str | None = None, email: str | None = None,
                 realname: str = "", firstname: str = "", extra_emails: tuple[str, ...] = ()) -> int:
        with self._lock:
            uid = next(self._user_ids)
            emails = ([(email, True)] if email else []) + [(e, False) for e in extra_emails]
            self.users[uid] = FakeUser(uid, name, profile, token or f"tok-{secrets.token_hex(8)}", realname,
                                       firstname, emails)
            return uid

    def token_of(self, user_id: int) -> str:
        return self.users[user_id].user_token

    def create_category(self, completename: str) -> int:
        with self._lock:
            for cid, cat in self.categories.items():
                if cat["completename"] == completename:
                    return cid
            cid = next(self._ids["cat"])
            self.categories[cid] = {"id": cid, "name": completename.split(" > ")[-1], "completename": completename}
            return cid

    def create_entity(self, name: str) -> int:
        """A child entity of the root (its completename is ``Root entity > name``)."""
        with self._lock:
            eid = max(self.entities) + 1
            self.entities[eid] = f"Root entity > {name}"
            return eid

    def create_ticket(self, requester: int | str | None = None, name: str = "Printer does not print",
                      content: str = "<p>Nothing comes out of the printer.</p>", *, writer: int | None = None,
                      status: int = INCOMING, category: str | None = None, assigned: int | None = None,
                      date: str | None = None, entity: int = 0) -> int:
        """Create a ticket as GLPI would store it. ``requester``: a user id, or an e-mail address for an
        anonymous requester (``users_id`` 0 + ``alternative_email``); default: the standard requester."""
        with self._lock:
            req = self.requester_id if requester is None else requester
            writer_id = writer if writer is not None else (req if isinstance(req, int) else 0)
            tid = self._insert_ticket(name, content, writer_id, status=status, date=date, entity=entity,
                                      category_id=self.create_category(category) if category else 0)
            if isinstance(req, int):
                self._add_actor(tid, req, REQUESTER)
            else:
                self._add_actor(tid, 0, REQUESTER, alternative_email=req)
            if assigned is not None:
                self._add_actor(tid, assigned, ASSIGN)
            return tid

    def _insert_ticket(self, name: str, content: str, writer_id: int, *, status: int = INCOMING,
                       date: str | None = None, category_id: int = 0, entity: int = 0, ticket_type: int = 1) -> int:
        tid = next(self._ids["ticket"])
        stamp = date or self._stamp()
        self.tickets[tid] = {
            "id": tid, "entities_id": entity, "name": name, "date": stamp, "closedate": None, "solvedate": None,
            "date_mod": stamp, "users_id_lastupdater": writer_id, "status": status,
            "users_id_recipient": writer_id, "requesttypes_id": 1, "content": content, "urgency": 3,
            "impact": 3, "priority": 3, "itilcategories_id": category_id,
            "type": ticket_type, "global_validation": 1, "externalid": "", "is_deleted": 0, "date_creation": stamp,
        }
        return tid

    def _add_actor(self, tid: int, uid: int, kind: int, alternative_email: str = "", use_notification: int = 1) -> None:
        self.ticket_users.append({"id": next(self._ids["tu"]), "tickets_id": tid, "users_id": uid, "type": kind,
                                  "use_notification": use_notification, "alternative_email": alternative_email})

    def assign(self, ticket_id: int, user_id: int) -> None:
        with self._lock:
            self._add_actor(ticket_id, user_id, ASSIGN)

    # ------------------------------------------------------------------ state accessors (for asserts)
    def ticket(self, ticket_id: int) -> dict[str, Any]:
        with self._lock:
            return dict(self.tickets[ticket_id])

    def followups(self, ticket_id: int, as_user: int | None = None) -> list[dict[str, Any]]:
        """Follow-ups of a ticket; with ``as_user``, only those that user's profile may see."""
        with self._lock:
            rows = [dict(f) for f in self._followups if f["items_id"] == ticket_id]
            if as_user is not None:
                rows = [f for f in rows if self._can_see_followup(self.users[as_user], f)]
            return rows

    def requesters(self, ticket_id: int) -> list[dict[str, Any]]:
        """The ticket's requester rows (``Ticket_User`` type 1)."""
        with self._lock:
            return [dict(tu) for tu in self.ticket_users if tu["tickets_id"] == ticket_id and tu["type"] == REQUESTER]

    def solutions(self, ticket_id: int) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(s) for s in self._solutions if s["items_id"] == ticket_id]

    # ------------------------------------------------------------------ actions as a person in the UI
    def add_followup(self, ticket_id: int, as_user: int, content: str, *, is_private: bool = False,
                     **flags: Any) -> int:
        with self._lock:
            return self._add_followup(self.users[as_user],
                                      {"itemtype": "Ticket", "items_id": ticket_id, "content": content,
                                       "is_private": int(is_private), **flags})

    def add_solution(self, ticket_id: int, as_user: int, content: str = "<p>Restart the spooler.</p>") -> int:
        with self._lock:
            return self._add_solution(self.users[as_user],
                                      {"itemtype": "Ticket", "items_id": ticket_id, "content": content})

    def approve_solution(self, ticket_id: int, as_user: int) -> int:
        """The requester clicks "Approve" in the self-service timeline (a follow-up with ``add_close``)."""
        return self.add_followup(ticket_id, as_user, "", add_close=1)

    def refuse_solution(self, ticket_id: int, as_user: int, reason: str) -> int:
        """The requester clicks "Refuse" with a reason (a follow-up with ``add_reopen``)."""
        return self.add_followup(ticket_id, as_user, reason, add_reopen=1)

    # ------------------------------------------------------------------ GLPI business rules
    def _rights(self, user: FakeUser) -> dict[str, int]:
        return self.profiles[user.profile]["rights"]

    def _is_actor(self, tid: int, uid: int, kinds: tuple[int, ...] = (REQUESTER, ASSIGN, OBSERVER)) -> bool:
        return any(tu["tickets_id"] == tid and tu["users_id"] == uid and tu["type"] in kinds
                   for tu in self.ticket_users)

    def _can_read_ticket(self, user: FakeUser, t: dict[str, Any]) -> bool:
        r = self._rights(user)["ticket"]
        if r & TICKET_READALL:
            return True
        mine = self._is_actor(t["id"], user.id) or t["users_id_recipient"] == user.id
        return bool(r & TICKET_READMY) and mine

    def _can_see_followup(self, user: FakeUser, f: dict[str, Any]) -> bool:
        r = self._rights(user)["followup"]
        if f["is_private"]:
            return bool(r & FOLLOWUP_SEEPRIVATE) or f["users_id"] == user.id
        return bool(r & (FOLLOWUP_SEEPUBLIC | FOLLOWUP_SEEPRIVATE))

    def _ticket_or_fail(self, tid: Any) -> dict[str, Any]:
        try:
            return self.tickets[int(tid)]
        except (KeyError, TypeError, ValueError):
            raise _APIError(400, "ERROR_GLPI_ADD", "Item not found") from None

    def _touch(self, t: dict[str, Any], user: FakeUser) -> None:
        t["date_mod"] = self._stamp()
        t["users_id_lastupdater"] = user.id

    def _set_status(self, t: dict[str, Any], status: int, user: FakeUser) -> None:
        old = t["status"]
        t["status"] = status
        self._touch(t, user)
        if old in (SOLVED, CLOSED) and status not in (SOLVED, CLOSED):
            # CommonITILObject::post_updateItem: "Mark existing solutions as refused" (the last one).
            last = self._last_solution(t["id"])
            if last is not None:
                last.update(status=VALIDATION_REFUSED, users_id_approval=user.id, date_approval=self._stamp())

    def _last_solution(self, tid: int) -> dict[str, Any] | None:
        rows = [s for s in self._solutions if s["items_id"] == tid]
        return max(rows, key=lambda s: (s["date_creation"], s["id"])) if rows else None

    def _add_followup(self, user: FakeUser, inp: dict[str, Any]) -> int:
        rights = self._rights(user)["followup"]
        if not rights & (FOLLOWUP_ADDMYTICKET | FOLLOWUP_ADDGROUPTICKET | FOLLOWUP_ADDALLTICKET):
            raise _APIError(403, "ERROR_RIGHT_MISSING", "You don't have permission to perform this action.")
        if inp.get("itemtype", "Ticket") != "Ticket":
            raise _APIError(400, "ERROR_GLPI_ADD", "Only tickets are supported by the fake")
        t = self._ticket_or_fail(inp.get("items_id"))
        mine = self._is_actor(t["id"], user.id, (REQUESTER, OBSERVER)) or t["users_id_recipient"] == user.id
        if not (rights & FOLLOWUP_ADDALLTICKET or (rights & FOLLOWUP_ADDMYTICKET and mine)):
            raise _APIError(400, "ERROR_GLPI_ADD", "You don't have permission to perform this action.")
        content = str(inp.get("content") or "")
        if not content and "add_close" not in inp and "add_reopen" not in inp:
            raise _APIError(400, "ERROR_GLPI_ADD", "You can't add a followup without description")
        close = "add_close" in inp and self.honour_add_close
        if "add_close" in inp and not content:
            content = "Solution approved"
        reopen = "add_reopen" in inp and self.honour_add_close
        if "add_reopen" in inp and not content:
            raise _APIError(400, "ERROR_GLPI_ADD", "If you reject the solution, you must specify a reason")
        is_private = 0 if self.drop_privacy else int(bool(int(inp.get("is_private") or 0)))
        # GLPI's trap [4]: a requester's follow-up on a solved ticket refuses the solution and reopens.
        if "add_close" not in inp and t["status"] == SOLVED and self._is_actor(t["id"], user.id, (REQUESTER,)):
            reopen = True
        if t["status"] == WAITING:  # ParentStatus: a follow-up on a pending ticket reopens it
            reopen = True
        stamp = self._stamp()
        fid = next(self._ids["fup"])
        self._followups.append({
            "id": fid, "itemtype": "Ticket", "items_id": t["id"], "date": stamp, "users_id": user.id,
            "users_id_editor": 0, "content": content, "is_private": is_private, "requesttypes_id": 1,
            "date_mod": stamp, "date_creation": stamp, "timeline_position": 1, "sourceitems_id": 0,
            "sourceof_items_id": 0,
        })
        self._touch(t, user)
        if not inp.get("_disablenotif"):
            self.notifications.append(("add_followup", t["id"], fid))
        # ParentStatus::updateParentStatus
        if close and t["status"] == SOLVED:
            t["status"] = CLOSED
            t["closedate"] = stamp
            last = self._last_solution(t["id"])
            if last is not None:
                last.update(status=VALIDATION_ACCEPTED, users_id_approval=user.id, date_approval=stamp)
        elif reopen and t["status"] in (WAITING, SOLVED, CLOSED):
            self._set_status(t, ASSIGNED if self._has_assignee(t["id"]) else INCOMING, user)
        return fid

    def _has_assignee(self, tid: int) -> bool:
        return any(tu["tickets_id"] == tid and tu["type"] == ASSIGN for tu in self.ticket_users)

    def _add_solution(self, user: FakeUser, inp: dict[str, Any]) -> int:
        if not self._rights(user)["ticket"] & TICKET_UPDATE and not self._is_actor(
                int(inp.get("items_id") or 0), user.id, (ASSIGN,)):
            raise _APIError(403, "ERROR_RIGHT_MISSING", "You don't have permission to perform this action.")
        t = self._ticket_or_fail(inp.get("items_id"))
        if t["status"] in (SOLVED, CLOSED):
            raise _APIError(400, "ERROR_GLPI_ADD",
                            "The item is already solved, did anyone pushed a solution before you?")
        content = str(inp.get("content") or "")
        stamp = self._stamp()
        sid = next(self._ids["sol"])
        immediate = self.autoclose_delay == 0
        self._solutions.append({
            "id": sid, "itemtype": "Ticket", "items_id": t["id"], "solutiontypes_id": 0, "solutiontype_name": None,
            "content": content, "date_creation": stamp, "date_mod": stamp, "date_approval": stamp if immediate else None,
            "users_id": user.id, "user_name": None, "users_id_editor": 0,
            "users_id_approval": user.id if immediate else 0, "user_name_approval": None,
            "status": VALIDATION_ACCEPTED if immediate else VALIDATION_WAITING, "itilfollowups_id": None,
        })
        t["solvedate"] = stamp
        if immediate:
            t["closedate"] = stamp
        self._set_status(t, CLOSED if immediate else SOLVED, user)
        return sid

    def _add_ticket(self, user: FakeUser, inp: dict[str, Any]) -> int:
        """``POST Ticket``: API::createItems, Ticket::prepareInputForAdd and CommonITILObject::post_addItem."""
        try:
            entity = int(inp.get("entities_id", 0) or 0)  # missing: the session's active entity (0 here)
        except (TypeError, ValueError):
            raise _APIError(400, "ERROR_GLPI_ADD", "Incorrect value for entities_id") from None
        if not self._rights(user)["ticket"] & TICKET_CREATE or entity not in self.entities:
            raise _APIError(400, "ERROR_GLPI_ADD", "You don't have permission to perform this action.")
        missing = [f for f in self.mandatory_ticket_fields if not inp.get(f)]
        if missing:
            raise _APIError(400, "ERROR_GLPI_ADD",
                            f"Mandatory fields are not filled. Please correct: {', '.join(missing)}")
        if "_users_id_requester" not in inp and not inp.get("_auto_import"):
            inp["_users_id_requester"] = user.id
        initial = inp.get("_users_id_requester")
        if self.ticket_rule is not None:
            inp = self.ticket_rule(dict(inp))
            if inp.get("_users_id_requester") != initial:
                inp.pop("_users_id_requester_notif", None)  # "if requester set by rule, clear address"
        notif = inp.get("_users_id_requester_notif") or {}
        if not isinstance(notif, dict):
            raise _APIError(400, "ERROR_GLPI_ADD", "_users_id_requester_notif must be an object")
        emails = notif.get("alternative_email") or []
        for email in emails if isinstance(emails, list) else []:
            if email and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", str(email)):
                raise _APIError(400, "ERROR_GLPI_ADD", f"Invalid email address {email}")
        content = str(inp.get("content") or "")
        name = str(inp.get("name") or "").strip()
        if not name:  # built from the content, 70 characters
            name = " ".join(re.sub(r"<[^>]+>", " ", html.unescape(content)).split())[:70]
        tid = self._insert_ticket(name, content, user.id, entity=entity, ticket_type=int(inp.get("type") or 1),
                                  category_id=int(inp.get("itilcategories_id") or 0))
        raw = inp.get("_users_id_requester")
        requesters = raw if isinstance(raw, list) else [raw]
        added: list[int] = []
        for index, value in enumerate(requesters):
            try:
                uid = int(value or 0)
            except (TypeError, ValueError):
                continue
            if uid in added:
                continue  # "This requester ID is already added"
            values = {k: v[index] for k, v in notif.items() if isinstance(v, list) and index < len(v)}
            alternative = str(values.get("alternative_email") or "")
            if uid == 0 and not alternative:
                continue  # empty actor
            if uid and uid not in self.users:
                continue  # the actor row cannot be added for a user that does not exist [INF]
            if uid:
                added.append(uid)
            self._add_actor(tid, uid, REQUESTER, alternative_email=alternative,
                            use_notification=int(values.get("use_notification", 1) or 0))
        if not inp.get("_disablenotif"):
            self.notifications.append(("new", tid, 0))
        return tid

    # ------------------------------------------------------------------ HTTP
    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        with self._lock:
            response = self._dispatch(request)
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        path = request.path
        prefix = "/apirest.php"
        rel = path[len(prefix):] if path.startswith(prefix) else path
        try:
            body = request.get_json(silent=True, force=True) if request.data else None
        except Exception:  # noqa: BLE001 - a fake: bad JSON is just "no body"
            body = None
        entry = LoggedRequest(request.method, rel, CaseInsensitiveDict(dict(request.headers.items())), body,
                              list(request.args.items(multi=True)))
        self.request_log.append(entry)
        try:
            if self.outage is not None:
                raise _APIError(self.outage, "ERROR_OUTAGE", "the helpdesk is down (outage injected by the test)")
            self._inject_failure(rel)
            if not path.startswith(prefix):
                raise _APIError(404, "ERROR_RESOURCE_NOT_FOUND_NOR_COMMONDBTM", "resource not found")
            self._check_app_token(request)
            status, payload, headers = self._route(request, rel.strip("/"), body)
        except _APIError as e:
            status, headers = e.http, {}
            payload = [e.code, f"{e.message}; view documentation in your browser at {self.url}/#{e.code}"]
        entry.status = status
        resp = Response(json.dumps(payload), status=status, mimetype="application/json")
        for k, v in headers.items():
            resp.headers[k] = v
        return resp

    def _inject_failure(self, rel: str) -> None:
        for i, (status, payload, where) in enumerate(self._failures):
            if where is None or where in rel:
                del self._failures[i]
                raise _APIError(status, payload[0], payload[1])

    def _check_app_token(self, request: Request) -> None:
        if not self.app_token:
            return
        given = request.headers.get("App-Token") or request.args.get("app_token")
        if not given:
            raise _APIError(400, "ERROR_APP_TOKEN_PARAMETERS_MISSING", "missing parameter app_token")
        if not hmac.compare_digest(given, self.app_token):
            raise _APIError(400, "ERROR_WRONG_APP_TOKEN_PARAMETER", "parameter app_token seems wrong")

    def _session_user(self, request: Request) -> FakeUser:
        token = request.headers.get("Session-Token") or request.args.get("session_token")
        if not token:
            raise _APIError(400, "ERROR_SESSION_TOKEN_MISSING", "parameter session_token is missing or empty")
        uid = self.sessions.get(token)
        if uid is None:
            raise _APIError(401, "ERROR_SESSION_TOKEN_INVALID", "session_token seems invalid")
        return self.users[uid]

    def _route(self, request: Request, rel: str, body: Any) -> tuple[int, Any, dict[str, str]]:
        parts = [p for p in rel.split("/") if p]
        method = request.method
        if parts == ["initSession"] and method == "GET":
            return self._init_session(request)
        user = self._session_user(request)
        raw = request.headers.get("X-GLPI-Sanitized-Content", "true").lower() == "false"
        status, payload, headers = self._route_session(request, method, parts, body, user)
        if not raw:
            payload = _sanitize(payload)
        return status, payload, headers

    def _route_session(self, request: Request, method: str, parts: list[str], body: Any,
                       user: FakeUser) -> tuple[int, Any, dict[str, str]]:
        if method == "GET":
            if parts == ["killSession"]:
                self.sessions = {k: v for k, v in self.sessions.items()
                                 if k != (request.headers.get("Session-Token") or request.args.get("session_token"))}
                return 200, True, {}
            if parts == ["getMyProfiles"]:
                p = self.profiles[user.profile]
                # The fake's entities are flat: none is recursive (no sub-entity exists).
                return 200, {"myprofiles": [{"id": p["id"], "name": p["name"], "entities": [
                    {"id": e, "name": "Root entity" if e == 0 else f"Entity {e}", "is_recursive": 0}
                    for e in sorted(self.entities)]}]}, {}
            if parts == ["getActiveProfile"]:
                return 200, {"active_profile": self._active_profile(user)}, {}
            if parts == ["getFullSession"]:
                return 200, {"session": {"glpiID": user.id, "glpiname": user.name, "glpiactive_entity": 0,
                                         "glpiactiveprofile": self._active_profile(user)}}, {}
            if len(parts) == 2 and parts[0] == "search":
                return self._search(request, parts[1], user)
            if len(parts) == 2:
                return 200, self._get_item(request, parts[0], parts[1], user), {}
            if len(parts) == 3:
                return self._get_subitems(request, parts[0], parts[1], parts[2], user)
        if method == "POST" and len(parts) == 1:
            inp = body.get("input") if isinstance(body, dict) else None
            if not isinstance(inp, dict):
                raise _APIError(400, "ERROR_BAD_ARRAY", "input parameter must be an object")
            if parts[0] == "ITILFollowup":
                new_id = self._add_followup(user, inp)
            elif parts[0] == "ITILSolution":
                new_id = self._add_solution(user, inp)
            elif parts[0] == "Ticket":
                new_id = self._add_ticket(user, inp)
            else:
                raise _APIError(400, "ERROR_RESOURCE_NOT_FOUND_NOR_COMMONDBTM", "resource not found by the fake")
            return 201, {"id": new_id, "message": ""}, {"Location": f"{self.url}/{parts[0]}/{new_id}"}
        if method in ("PUT", "PATCH", "DELETE"):
            raise _APIError(405, "ERROR_METHOD_NOT_ALLOWED", "method not implemented by the fake")
        raise _APIError(400, "ERROR_RESOURCE_NOT_FOUND_NOR_COMMONDBTM", "resource not found")

    def _init_session(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        auth = request.headers.get("Authorization", "")
        token = request.args.get("user_token")
        if auth.lower().startswith("user_token "):
            token = auth.split(" ", 1)[1].strip()
        elif auth.lower().startswith("basic "):
            raise _APIError(400, "ERROR_LOGIN_WITH_CREDENTIALS_DISABLED", "cannot login with credentials")
        if not token:
            raise _APIError(400, "ERROR_LOGIN_PARAMETERS_MISSING", "parameter(s) login, password or user_token are missing")
        user = next((u for u in self.users.values() if hmac.compare_digest(u.user_token, token)), None)
        if user is None:
            raise _APIError(401, "ERROR_GLPI_LOGIN_USER_TOKEN", "parameter user_token seems invalid")
        session_token = secrets.token_hex(13)
        self.sessions[session_token] = user.id
        out: dict[str, Any] = {"session_token": session_token}
        if request.args.get("get_full_session") == "true":
            out["session"] = {"glpiID": user.id, "glpiname": user.name,
                              "glpiactiveprofile": self._active_profile(user)}
        return 200, out, {}

    def _active_profile(self, user: FakeUser) -> dict[str, Any]:
        p = self.profiles[user.profile]
        return {"id": p["id"], "name": p["name"], "interface": p["interface"], "is_default": 0, **p["rights"]}

    # ---- reads
    def _visible_ticket(self, tid: str, user: FakeUser) -> dict[str, Any]:
        try:
            t = self.tickets[int(tid)]
        except (KeyError, ValueError):
            raise _APIError(404, "ERROR_ITEM_NOT_FOUND", "Item not found") from None
        if not self._can_read_ticket(user, t):
            raise _APIError(403, "ERROR_RIGHT_MISSING", "You don't have permission to perform this action.")
        return t

    def _get_item(self, request: Request, itemtype: str, item_id: str, user: FakeUser) -> Any:
        if itemtype == "Ticket":
            t = dict(self._visible_ticket(item_id, user))
            names = request.args.getlist("add_keys_names[]")
            if names:
                t["_keys_names"] = {k: self._friendly(k, t.get(k)) for k in names if k in t}
            if request.args.get("expand_dropdowns") == "true":
                for k in list(t):
                    if k.endswith("_id") or k.startswith("users_id") or k.endswith("s_id"):
                        if k not in ("id",):
                            t[k] = self._friendly(k, t[k])
            return t
        if itemtype in ("ITILFollowup", "ITILSolution"):
            rows = self._followups if itemtype == "ITILFollowup" else self._solutions
            row = next((r for r in rows if str(r["id"]) == item_id), None)
            if row is None:
                raise _APIError(404, "ERROR_ITEM_NOT_FOUND", "Item not found")
            self._visible_ticket(str(row["items_id"]), user)
            if itemtype == "ITILFollowup" and not self._can_see_followup(user, row):
                raise _APIError(403, "ERROR_RIGHT_MISSING", "You don't have permission to perform this action.")
            return dict(row)
        if itemtype == "User":
            u = self._visible_user(item_id, user)
            return {"id": u.id, "name": u.name, "realname": u.realname, "firstname": u.firstname,
                    "is_active": int(u.is_active), "entities_id": 0, "profiles_id": self.profiles[u.profile]["id"]}
        if itemtype == "ITILCategory":
            cat = self.categories.get(int(item_id)) if item_id.isdigit() else None
            if cat is None:
                raise _APIError(404, "ERROR_ITEM_NOT_FOUND", "Item not found")
            return dict(cat)
        raise _APIError(400, "ERROR_RESOURCE_NOT_FOUND_NOR_COMMONDBTM", "resource not found by the fake")

    def _visible_user(self, item_id: str, user: FakeUser) -> FakeUser:
        target = self.users.get(int(item_id)) if item_id.isdigit() else None
        if target is None:
            raise _APIError(404, "ERROR_ITEM_NOT_FOUND", "Item not found")
        if target.id != user.id and not self._rights(user)["user"] & USER_READ:
            raise _APIError(403, "ERROR_RIGHT_MISSING", "You don't have permission to perform this action.")
        return target

    def _friendly(self, key: str, value: Any) -> Any:
        if key == "itilcategories_id":
            cat = self.categories.get(int(value or 0))
            return cat["completename"] if cat else ""
        if key.startswith("users_id"):
            u = self.users.get(int(value or 0))
            return u.display if u else ""
        if key == "entities_id":
            return self.entities.get(int(value or 0), "")
        return value

    def _get_subitems(self, request: Request, itemtype: str, item_id: str, sub: str,
                      user: FakeUser) -> tuple[int, Any, dict[str, str]]:
        if itemtype == "Ticket":
            t = self._visible_ticket(item_id, user)
            if sub == "Ticket_User":
                rows = [dict(tu) for tu in self.ticket_users if tu["tickets_id"] == t["id"]]
            elif sub == "ITILFollowup":
                rows = [dict(f) for f in self._followups
                        if f["items_id"] == t["id"] and self._can_see_followup(user, f)]
            elif sub == "ITILSolution":
                rows = [dict(s) for s in self._solutions if s["items_id"] == t["id"]]
            else:
                raise _APIError(400, "ERROR_RESOURCE_NOT_FOUND_NOR_COMMONDBTM", "sub-itemtype not supported by the fake")
        elif itemtype == "User" and sub == "UserEmail":
            u = self._visible_user(item_id, user)
            rows = [{"id": i + 1, "users_id": u.id, "is_default": int(default), "is_dynamic": 0, "email": email}
                    for i, (email, default) in enumerate(u.emails)]
        else:
            raise _APIError(400, "ERROR_RESOURCE_NOT_FOUND_NOR_COMMONDBTM", "resource not found by the fake")
        sort = request.args.get("sort", "id")
        rows.sort(key=lambda r: _sort_key(r.get(sort)), reverse=request.args.get("order", "ASC").upper() == "DESC")
        return _paginate(rows, request.args.get("range", "0-49"), lambda page, total, rng: page)

    def _search(self, request: Request, itemtype: str, user: FakeUser) -> tuple[int, Any, dict[str, str]]:
        criteria: dict[str, dict[str, str]] = {}
        forcedisplay: list[str] = []
        for key, value in request.args.items(multi=True):
            m = re.fullmatch(r"criteria\[(\d+)\]\[(\w+)\]", key)
            if m:
                criteria.setdefault(m.group(1), {})[m.group(2)] = value
            elif re.fullmatch(r"forcedisplay\[\d+\]", key):
                forcedisplay.append(value)
        cols: dict[str, Callable[[Any], Any]]
        rows: list[Any]
        always: list[str]
        if itemtype == "Ticket":
            if not self._rights(user)["ticket"] & (TICKET_READMY | TICKET_READALL | TICKET_UPDATE):
                raise _APIError(403, "ERROR_RIGHT_MISSING", "You don't have permission to perform this action.")
            cols = {"1": lambda t: t["name"], "2": lambda t: t["id"], "12": lambda t: t["status"],
                    "15": lambda t: t["date"], "19": lambda t: t["date_mod"], "21": lambda t: t["content"],
                    "4": lambda t: [tu["users_id"] for tu in self.ticket_users
                                    if tu["tickets_id"] == t["id"] and tu["type"] == REQUESTER]}
            rows = [t for t in self.tickets.values() if self._can_read_ticket(user, t) and not t["is_deleted"]]
            always = ["2"]
        elif itemtype == "User":
            if not self._rights(user)["user"] & USER_READ:  # User::canView()
                raise _APIError(403, "ERROR_RIGHT_MISSING", "You don't have permission to perform this action.")
            cols = {"1": lambda u: u.name, "2": lambda u: u.id, "5": lambda u: [e for e, _ in u.emails],
                    "8": lambda u: int(u.is_active), "9": lambda u: u.firstname, "34": lambda u: u.realname}
            rows = list(self.users.values())
            always = ["1", "2"]
        else:
            raise _APIError(400, "ERROR_RESOURCE_NOT_FOUND_NOR_COMMONDBTM", "search supported on Ticket and User only")
        for crit in (criteria[k] for k in sorted(criteria, key=int)):
            if crit.get("link", "AND").upper() != "AND":
                raise _APIError(400, "ERROR", f"criteria link {crit.get('link')} not supported by the fake")
            getter = cols.get(crit.get("field", ""))
            if getter is None:
                raise _APIError(400, "ERROR", "Bad field ID in search criteria")
            searchtype, value = crit.get("searchtype", "contains"), crit.get("value", "")
            rows = [r for r in rows if _matches_any(getter(r), searchtype, value)]
        sort_getter = cols.get(request.args.get("sort", "1"), cols["1"])
        rows.sort(key=lambda r: (_sort_key(_first(sort_getter(r))), _first(cols["2"](r))),
                  reverse=request.args.get("order", "ASC").upper() == "DESC")
        shown = list(dict.fromkeys([*always, *forcedisplay]))
        data = []
        for r in rows:
            row: dict[str, Any] = {opt: _displayed(cols[opt](r)) for opt in shown if opt in cols}
            data.append(self.search_row_hook(row) if self.search_row_hook else row)

        def envelope(page: list[Any], total: int, rng: str) -> dict[str, Any]:
            return {"totalcount": total, "count": len(page), "sort": [request.args.get("sort", "1")],
                    "order": [request.args.get("order", "ASC")], "data": page, "content-range": rng}

        return _paginate(data, request.args.get("range", "0-49"), envelope)

    # ------------------------------------------------------------------ webhooks (GLPI 11)
    def webhook_delivery(self, event: str, itemtype: str, ticket_id: int, secret: str,
                         timestamp: int | None = None, item_id: int | None = None) -> tuple[dict[str, str], bytes]:
        """A signed GLPI 11 delivery for ``itemtype``/``event`` built from this fake's state.

        ``Ticket``: the ticket; ``ITILFollowup``/``ITILSolution``: ``item_id`` or the ticket's latest
        one, with the ticket as ``parent_item``. Headers as GLPI sends them (no Content-Type) [3.1].
        """
        with self._lock:
            t = self.tickets[ticket_id]
            data: dict[str, Any]
            if itemtype == "Ticket":
                item = self._hl_ticket(t)
                if event == "delete":
                    item["is_deleted"] = True
                data = {"item": item, "event": event}
            elif itemtype in ("ITILFollowup", "ITILSolution"):
                rows = [r for r in (self._followups if itemtype == "ITILFollowup" else self._solutions)
                        if r["items_id"] == ticket_id and (item_id is None or r["id"] == item_id)]
                row = max(rows, key=lambda r: r["id"])
                item = self._hl_followup(row) if itemtype == "ITILFollowup" else self._hl_solution(row)
                data = {"item": item, "event": event, "parent_item": self._hl_ticket(t)}
            else:
                raise ValueError(f"the fake builds Ticket/ITILFollowup/ITILSolution deliveries, not {itemtype}")
        body = php_json_pretty(data).encode()
        ts = str(int(time.time()) if timestamp is None else timestamp)
        signature = hmac.new(secret.encode(), body + ts.encode(), hashlib.sha256).hexdigest()
        return {"X-GLPI-signature": signature, "X-GLPI-timestamp": ts}, body

    @staticmethod
    def cra_challenge(secret: str) -> tuple[str, str]:
        """GLPI's challenge-response check of a webhook URL: ``(crc_token, expected answer)``.

        ``Webhook::validateCRAChallenge($url, 'validate_cra_challenge', $secret)`` (glpi-project/glpi
        src/Webhook.php) sends ``GET $url?crc_token=hash_hmac('sha256', 'validate_cra_challenge', $secret)``
        and accepts the 200 answer only when it equals ``hash_hmac('sha256', $crc_token, $secret)``; PHP's
        argument order is (algo, data, key). The body is always the constant 'validate_cra_challenge'
        (QueuedWebhook::sendById, Webhook::showForm, ajax/webhook.php) [3.1].
        """
        token = hmac.new(secret.encode(), b"validate_cra_challenge", hashlib.sha256).hexdigest()
        return token, hmac.new(secret.encode(), token.encode(), hashlib.sha256).hexdigest()

    def _hl_user(self, uid: int) -> dict[str, Any]:
        u = self.users.get(uid)
        if u is None:
            return {"id": None, "name": None, "href": None}
        return {"id": uid, "name": u.name, "href": f"/Administration/User/{uid}"}

    def _hl_ticket(self, t: dict[str, Any]) -> dict[str, Any]:
        cat = self.categories.get(t["itilcategories_id"])
        team = []
        for tu in self.ticket_users:
            if tu["tickets_id"] != t["id"]:
                continue
            u = self.users.get(tu["users_id"])
            role = {REQUESTER: "requester", ASSIGN: "assigned", OBSERVER: "observer"}[tu["type"]]
            team.append({"role": role, "name": u.name if u else tu["alternative_email"],
                         "realname": u.realname if u else "", "firstname": u.firstname if u else "",
                         "display_name": u.display if u else tu["alternative_email"],
                         "href": f"/Administration/User/{tu['users_id']}"})
        return {
            "id": t["id"], "name": t["name"], "content": t["content"], "is_deleted": bool(t["is_deleted"]),
            "category": {"id": cat["id"], "name": cat["name"]} if cat else {"id": 0, "name": ""},
            "location": {"id": 0, "name": ""}, "urgency": t["urgency"], "impact": t["impact"],
            "priority": t["priority"], "actiontime": 0, "date_creation": _iso(t["date_creation"]),
            "date_mod": _iso(t["date_mod"]), "date": _iso(t["date"]), "type": t["type"],
            "external_id": t["externalid"], "request_type": {"id": 1, "name": "Helpdesk"},
            "status": {"id": t["status"], "name": STATUS_NAMES[t["status"]]},
            "entity": {"id": t["entities_id"], "name": self.entities[t["entities_id"]].split(" > ")[-1],
                       "completename": self.entities[t["entities_id"]]}, "team": team,
        }

    def _hl_followup(self, f: dict[str, Any]) -> dict[str, Any]:
        return {"id": f["id"], "itemtype": f["itemtype"], "items_id": f["items_id"], "content": f["content"],
                "is_private": bool(f["is_private"]), "user": self._hl_user(f["users_id"]),
                "user_editor": self._hl_user(f["users_id_editor"]), "request_type": {"id": 1, "name": "Helpdesk"},
                "date_creation": _iso(f["date_creation"]), "date_mod": _iso(f["date_mod"])}

    def _hl_solution(self, s: dict[str, Any]) -> dict[str, Any]:
        return {"id": s["id"], "itemtype": s["itemtype"], "items_id": s["items_id"], "content": s["content"],
                "user": self._hl_user(s["users_id"]), "user_editor": self._hl_user(s["users_id_editor"])}


# ---------------------------------------------------------------------------------------------- helpers
class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: tests assert on :attr:`FakeGLPI.request_log` instead."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def php_json_pretty(data: Any) -> str:
    """``json_encode($data, JSON_PRETTY_PRINT)``: 4-space indent, ``\\/`` and ``\\uXXXX`` escapes."""
    return json.dumps(data, indent=4, ensure_ascii=True).replace("/", "\\/")


def _iso(stamp: str | None) -> str | None:
    return datetime.strptime(stamp, DATE_FMT).strftime("%Y-%m-%dT%H:%M:%S+00:00") if stamp else None


def _sanitize(value: Any) -> Any:
    if isinstance(value, str):
        return html.escape(value, quote=True)
    if isinstance(value, list):
        return [_sanitize(v) for v in value]
    if isinstance(value, dict):
        return {k: _sanitize(v) for k, v in value.items()}
    return value


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int) else (1, str(value or ""))


def _matches(actual: Any, searchtype: str, value: str) -> bool:
    """GLPI search types; dates compare as ``Y-m-d H:i:s`` strings, which sort like the dates."""
    if searchtype in ("morethan", "lessthan"):
        if actual is None:
            return False
        a, b = (actual, int(value)) if isinstance(actual, int) else (str(actual), value)
        return a > b if searchtype == "morethan" else a < b
    if searchtype == "equals":
        return str(actual) == value
    if searchtype == "contains":
        # Search::makeTextSearchValue: a leading ^ anchors the start, a trailing $ the end; LIKE is
        # case-insensitive under MySQL's default collation.
        text, needle = str(actual or "").lower(), value.strip().lower()
        starts, ends = needle.startswith("^"), needle.endswith("$")
        needle = needle[1 if starts else 0: -1 if ends else None]
        if starts and ends:
            return text == needle
        if starts:
            return text.startswith(needle)
        if ends:
            return text.endswith(needle)
        return needle in text
    raise _APIError(400, "ERROR", f"searchtype {searchtype} not supported by the fake")


def _matches_any(actual: Any, searchtype: str, value: str) -> bool:
    """A multi-valued option (a user's e-mails, a ticket's requesters) matches when one value does."""
    if isinstance(actual, list):
        return any(_matches(a, searchtype, value) for a in actual)
    return _matches(actual, searchtype, value)


def _first(value: Any) -> Any:
    return (value[0] if value else None) if isinstance(value, list) else value


def _displayed(value: Any) -> Any:
    """searchItems' "manage multiple values": one value as itself, several as a list, none as None."""
    if isinstance(value, list):
        return value[0] if len(value) == 1 else (value or None)
    return value


def _paginate(rows: list[Any], rng: str, wrap: Callable[[list[Any], int, str], Any]) -> tuple[int, Any, dict[str, str]]:
    m = re.fullmatch(r"(\d+)-(\d+)", rng)
    if not m:
        raise _APIError(400, "ERROR_RANGE_EXCEED_TOTAL", "range parameter is malformed")
    start, end = int(m.group(1)), int(m.group(2))
    total = len(rows)
    if total and start >= total:
        raise _APIError(400, "ERROR_RANGE_EXCEED_TOTAL", "Provided range exceed total count of data")
    page = rows[start:end + 1]
    content_range = f"{start}-{start + max(len(page) - 1, 0)}/{total}"
    status = 206 if len(page) < total else 200
    return status, wrap(page, total, content_range), {"Content-Range": content_range}


def iter_requests(fake: FakeGLPI, method: str, path: str) -> Iterator[LoggedRequest]:
    """The logged requests with this method and path (below ``apirest.php``)."""
    return (r for r in fake.request_log if r.method == method and r.path.rstrip("/") == path.rstrip("/"))
