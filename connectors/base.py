"""What every connector speaks: normalized models, small capability interfaces, one error tree.

A connector implements the capabilities its helpdesk has:

- :class:`TicketReader`  - fetch the authoritative ticket with its comments and outcomes;
- :class:`TicketStateReader` - only the ticket's state, in one cheap read (confirmation pages);
- :class:`TicketWriter`  - post a public reply or a private note, close on confirmation, hand back;
- :class:`WebhookSource` - authenticate a webhook on its raw bytes and parse it into events;
- :class:`TicketPoller`  - list tickets created or changed since a watermark;
- :class:`Scoped`        - tell whether a ticket lies inside the configured projects / entities;
- :class:`Checkable`     - test credentials and rights, in plain words;
- :class:`TicketCreator` - find a person in the helpdesk and open a ticket on their behalf.

Connectors return these models, never vendor dicts; they never import Flask or ``plugin``.
Every write is confirmed by reading back (Redmine answers 204 and silently drops what the role may
not do), and every comment we post carries a *marker* (``ha-`` + hex) in its text so that a retry
can find what an earlier attempt already posted.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from helpdesk_errors import HelpdeskError

# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


class ConnectorError(HelpdeskError):
    """Base of connector errors. ``transient`` errors are retried by the worker with backoff."""

    transient: bool = False


class TransientConnectorError(ConnectorError):
    """Network failure, timeout, HTTP 429/5xx: worth retrying later."""

    transient = True


class WriteOutcomeUnknown(TransientConnectorError):
    """A write was sent but no answer came (read timeout, connection reset): the helpdesk may have
    applied it, or may still apply it. Never write again on this alone: read back until the write
    shows or a bounded wait has passed (:func:`connectors.readback.await_write`). A write that was
    certainly not sent (connection refused, connect timeout) is a plain
    :class:`TransientConnectorError` and safe to retry."""


class AuthenticationError(ConnectorError):
    """Credentials refused (HTTP 401 after one session re-init, bad token)."""


class PermissionDenied(ConnectorError):
    """The plugin's account lacks a right (HTTP 403, or a write silently dropped)."""


class NotFound(ConnectorError):
    """The ticket (or another item) does not exist or is not visible to the plugin's account."""


class RejectedByHelpdesk(ConnectorError):
    """The helpdesk refused the request for a business reason (validation error, already solved...)."""


class WriteNotApplied(PermissionDenied):
    """The helpdesk answered success but reading back shows the write was not applied as asked."""


class WebhookError(HelpdeskError):
    """A webhook delivery that must be refused. ``status`` is the HTTP status to answer."""

    status: int = 400


class SignatureMissing(WebhookError):
    status = 400


class SignatureInvalid(WebhookError):
    status = 401


class MalformedPayload(WebhookError):
    status = 400


class ChallengeRefused(WebhookError):
    """A GET challenge that is not the one the helpdesk sends. Answered 403 with a fixed text: the
    reason (no secret, wrong token) is not told to a caller who may be probing."""

    status = 403


# --------------------------------------------------------------------------------------------------
# Normalized models
# --------------------------------------------------------------------------------------------------

#: Normalized ticket states. ``solved``: a solution awaits the requester's approval (GLPI 5,
#: Redmine's configured "resolved" status); ``closed``: finished.
TicketState = Literal["new", "open", "waiting", "solved", "closed"]

MARKER_RE = re.compile(r"\bha-[0-9a-f]{12}\b")


def clean_lookup(login_or_email: str) -> str:
    """A login or e-mail address as a person typed it, trimmed. Raises ValueError saying what is
    wrong (empty, too long, spaces or control characters) so that a form can show it."""
    value = (login_or_email or "").strip()
    if not value:
        raise ValueError("the login or e-mail address is empty")
    if len(value) > 254:
        raise ValueError("the login or e-mail address is longer than 254 characters")
    if any(c.isspace() or ord(c) < 32 or c == "\x7f" for c in value):
        raise ValueError("the login or e-mail address must be one word, without spaces")
    return value


def find_marker(text: str) -> str | None:
    """The first helpdesk-assist marker in ``text`` (``ha-`` + 12 hex digits), if any."""
    m = MARKER_RE.search(text or "")
    return m.group(0) if m else None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Person(_Model):
    id: str
    name: str = ""
    email: str | None = None
    login: str | None = None


class Comment(_Model):
    """A follow-up / journal note / solution in a ticket's timeline."""

    id: str
    author: Person | None = None
    #: Plain text (HTML converted to text); the raw vendor markup is not kept.
    body: str = ""
    is_private: bool = False
    kind: Literal["comment", "solution", "status"] = "comment"
    created_at: datetime | None = None
    #: Our marker when this comment was posted by helpdesk-assist.
    marker: str | None = None


class HelpdeskOutcome(_Model):
    """Something a person did inside the helpdesk that answers our suggestion."""

    kind: Literal["solved", "not_solved"]
    #: True when the requester did it (approved/refused the solution, closed/reopened the issue).
    by_requester: bool
    at: datetime | None = None
    #: Vendor detail, e.g. "solution approved", "status Resolved -> Feedback", the refusal reason.
    detail: str = ""


class Ticket(_Model):
    source: str
    id: str
    subject: str
    #: The description as plain text.
    body: str = ""
    state: TicketState
    #: The vendor's own status, e.g. "5" or "Resolved", for notes and logs.
    status_name: str = ""
    requester: Person | None = None
    #: Who typed the ticket in (GLPI's writer, Redmine's author).
    author: Person | None = None
    #: True when the connector knows the ticket was filed by an agent (not by the requester).
    created_by_agent: bool = False
    is_private: bool = False
    #: Category path, most general first (GLPI's ITIL category, Redmine's tracker/category).
    category: tuple[str, ...] = ()
    #: Where the ticket lives, as the connector's scope settings name it (the Redmine project id, the
    #: GLPI entity id); empty when unknown. :class:`Scoped` decides from it.
    scope: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    url: str = ""
    #: Timeline visible to the plugin's account, oldest first (private notes included: never
    #: send them to the LLM or to a public reply).
    comments: list[Comment] = Field(default_factory=list)
    #: Approvals/refusals/closings by people inside the helpdesk, oldest first.
    outcomes: list[HelpdeskOutcome] = Field(default_factory=list)

    def comment_with_marker(self, marker: str) -> Comment | None:
        for c in self.comments:
            if c.marker == marker or marker in c.body:
                return c
        return None


EventKind = Literal["created", "updated", "comment", "solution", "deleted"]


class TicketEvent(_Model):
    """A notification that something happened to a ticket. The ticket is always re-fetched."""

    source: str
    ticket_id: str
    kind: EventKind
    #: De-duplication key: the same delivery (a retry, a replay, an overlapping poll) gives the same key.
    delivery_key: str
    #: Who caused it, when known (used to drop our own echoes early).
    actor_id: str | None = None
    occurred_at: datetime | None = None
    #: The vendor's event name, for logs ("Ticket/new", "issue.updated", "opened").
    vendor_event: str = ""


class Link(_Model):
    label: str
    url: str


class SuggestedEntry(_Model):
    title: str
    text: str


class OutgoingMessage(_Model):
    """What we post, before the connector renders it in the helpdesk's markup.

    Every text field is plain text: the connector escapes it (HTML for GLPI, textile/markdown for
    Redmine). ``marker`` is rendered as a small visible reference line so that a retry finds it.
    """

    marker: str
    heading: str = ""
    paragraphs: list[str] = Field(default_factory=list)
    entries: list[SuggestedEntry] = Field(default_factory=list)
    links: list[Link] = Field(default_factory=list)
    #: Label/value lines for agent notes (category, confidence, scores).
    facts: list[tuple[str, str]] = Field(default_factory=list)
    footer: str = ""


class NewTicket(_Model):
    """A ticket to open on behalf of ``requester`` (the self-service chat's hand-off, a forwarded mail).

    ``body`` is plain text (the connector escapes it for the helpdesk's markup). ``marker`` (``ha-`` +
    12 hex digits) is written into the description: the worker runs a creation at least once, and
    a retry finds the ticket an earlier attempt created by this marker instead of opening a second one.
    """

    subject: str = Field(min_length=1, max_length=250)
    body: str = Field(max_length=60_000)
    #: Who the ticket is for, as :meth:`TicketCreator.find_requester` returned it.
    requester: Person
    marker: str
    #: A hint for the agents (e.g. the assistant's category), written into the description.
    category: str = ""

    @field_validator("marker")
    @classmethod
    def _is_marker(cls, v: str) -> str:
        if not MARKER_RE.fullmatch(v):
            raise ValueError("marker must be 'ha-' followed by 12 lowercase hex digits")
        return v

    @field_validator("subject")
    @classmethod
    def _one_line(cls, v: str) -> str:
        line = " ".join(v.split())
        if not line:
            raise ValueError("subject must not be blank")
        return line

    def as_message(self) -> OutgoingMessage:
        """The description as an :class:`OutgoingMessage`: the body's paragraphs, the category as a
        fact, the marker on the last line (``ref ha-...``), for the connector's own escaping."""
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", self.body) if p.strip()]
        facts = [("Category", self.category.strip())] if self.category.strip() else []
        return OutgoingMessage(marker=self.marker, paragraphs=paragraphs, facts=facts)


def N_(key: str) -> str:
    """Marks an English text as a key of the ru/en catalogs (``make messages`` extracts it). The text
    is returned as is: this package does not translate; the application renders a :class:`Text` in its
    reader's language (``plugin.i18n`` holds the catalogs)."""
    return key


def as_is(key: str) -> str:
    return key


class Text(_Model):
    """Words for a person, to be read in their language: a catalog key (English, with ``{name}``
    placeholders) and the values it is formatted with. A value that is itself a :class:`Text` (a
    cause, a consequence) is rendered in the same language; other values are shown as given (names,
    addresses, a helpdesk's own error text)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    params: dict[str, str | Text] = Field(default_factory=dict)

    @classmethod
    def of(cls, key: str, /, **params: object) -> Text:
        return cls(key=key, params={k: v if isinstance(v, Text) else str(v) for k, v in params.items()})

    @classmethod
    def plain(cls, words: object) -> Text:
        """Words that are not in the catalog (a helpdesk's or a server's own error text): shown as given."""
        return cls(key="{words}", params={"words": str(words)})

    def render(self, translate: Callable[[str], str] = as_is) -> str:
        """The text in the language of ``translate`` (a key missing from the catalog reads as written)."""
        values = {k: v.render(translate) if isinstance(v, Text) else v for k, v in self.params.items()}
        return translate(self.key).format(**values)

    def __str__(self) -> str:
        return self.render()


class CheckResult(_Model):
    """One finding of :meth:`Checkable.check`. ``name`` and ``detail`` are the English words (logs,
    tests); ``name_text`` / ``detail_text`` are what they were formatted from, for the admin to read in
    the admin language (None where the words come from elsewhere, e.g. a helpdesk's error text)."""

    name: str
    ok: bool
    #: Plain words: what is wrong and how to fix it (or what was confirmed).
    detail: str = ""
    name_text: Text | None = None
    detail_text: Text | None = None

    @classmethod
    def of(cls, name: str, ok: bool, detail: str | Text = "", /, **params: object) -> CheckResult:
        """A result whose ``name`` and ``detail`` are catalog keys (marked with :func:`N_`) formatted with
        ``params``; a ready :class:`Text` may stand for the detail."""
        name_text = Text.of(name, **params)
        detail_text = detail if isinstance(detail, Text) else Text.of(detail, **params)
        return cls(name=name_text.render(), ok=ok, detail=detail_text.render(), name_text=name_text,
                   detail_text=detail_text)

    def render(self, translate: Callable[[str], str] = as_is) -> tuple[str, str]:
        """``(name, detail)`` in the language of ``translate``."""
        return (
            self.name_text.render(translate) if self.name_text is not None else self.name,
            self.detail_text.render(translate) if self.detail_text is not None else self.detail,
        )


# --------------------------------------------------------------------------------------------------
# Capability interfaces
# --------------------------------------------------------------------------------------------------


class Connector(ABC):
    """Common base: a name (``glpi``, ``redmine``, ``email``) used in URLs, keys and logs."""

    name: str

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release sessions and connections."""


class TicketReader(ABC):
    @abstractmethod
    def get_ticket(self, ticket_id: str) -> Ticket:
        """The authoritative ticket with its timeline and helpdesk outcomes. Raises NotFound."""


class TicketStateReader(ABC):
    @abstractmethod
    def ticket_state(self, ticket_id: str) -> TicketState:
        """The ticket's current state and nothing else: one read, no comments, no people (the
        confirmation page asks it on every click). Raises NotFound, TransientConnectorError..."""


class TicketWriter(ABC):
    @abstractmethod
    def post_comment(self, ticket_id: str, message: OutgoingMessage, *, private: bool) -> Comment:
        """Post a public reply (visible to the requester) or a private note (agents only).

        Reads back and raises :class:`WriteNotApplied` when the comment is missing or its privacy
        is not what was asked (a "private" note that became public is the worst leak we can make).
        """

    @abstractmethod
    def close_confirmed(self, ticket_id: str, message: OutgoingMessage) -> Ticket:
        """The requester confirmed the suggestion: close through the helpdesk's own mechanism.

        GLPI: add a solution (unless one awaits approval) then approve it (``add_close``): status 6,
        solution accepted. Redmine: the configured closed status with ``message`` as the note.
        Idempotent: an already closed ticket is returned as it is. Reads back; returns the ticket.
        """

    @abstractmethod
    def hand_back(self, ticket_id: str, message: OutgoingMessage) -> Ticket:
        """The requester said it did not help: the ticket stays with (or goes back to) the agents,
        with ``message`` as a private note. GLPI refuses a solution awaiting approval
        (``add_reopen``); Redmine moves a resolved issue back to an open status."""


class WebhookSource(ABC):
    @abstractmethod
    def authenticate(self, headers: Mapping[str, str], body: bytes, args: Mapping[str, str]) -> None:
        """Check the delivery on its raw bytes (constant-time). Raises SignatureMissing (400) or
        SignatureInvalid (401). ``args`` are the URL query arguments (shared-secret URLs)."""

    def challenge(self, args: Mapping[str, str]) -> str | None:
        """Answer a GET challenge (GLPI's ``crc_token``), or None when the request is not one.

        Raises :class:`ChallengeRefused` for a challenge the helpdesk would not send: an answer is a
        MAC made with the webhook secret, so it must never cover bytes the caller chose."""
        return None

    @abstractmethod
    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[TicketEvent]:
        """The events in an authenticated delivery; an empty list for known events we ignore.
        Raises MalformedPayload for a body that is not what the helpdesk sends."""


class TicketPoller(ABC):
    @abstractmethod
    def poll(self, since: str | None) -> tuple[list[TicketEvent], str | None]:
        """Events for tickets created or changed after the watermark ``since`` (opaque string,
        None on the first run), and the new watermark. Overlaps are fine: events carry
        delivery keys and are de-duplicated downstream. One bad item does not stop the run."""


class Scoped(ABC):
    @abstractmethod
    def out_of_scope(self, ticket: Ticket) -> str | None:
        """Why ``ticket`` (as re-fetched) lies outside the configured scope (Redmine projects, GLPI
        entities), in words for the log; None when it is inside or no scope is configured. The
        pipeline asks on every path (webhook and polling) before doing anything with a ticket."""


class Checkable(ABC):
    @abstractmethod
    def check(self) -> list[CheckResult]:
        """Reachability, credentials and every right the plugin needs, in plain words."""


class TicketCreator(ABC):
    """Open a ticket on behalf of a person (the chat's "open a ticket", the mailbox's ``forward_via``).

    The worker calls :meth:`create_ticket` at least once: it must be idempotent. Errors follow the
    tree above: :class:`NotFound` when the person is not (or no longer) in the helpdesk,
    :class:`PermissionDenied` when a right is missing (the message names it),
    :class:`TransientConnectorError` when the helpdesk is down (retry later), and
    :class:`RejectedByHelpdesk` for a business refusal (a mandatory field, a closed project).
    """

    @abstractmethod
    def find_requester(self, login_or_email: str) -> Person | None:
        """The helpdesk account whose login or e-mail address is ``login_or_email`` (exact match,
        case-insensitive), or None when there is none. Only active accounts count."""

    @abstractmethod
    def find_created(self, new: NewTicket) -> Ticket | None:
        """The ticket an earlier attempt created for ``new`` (same marker, same requester), if any."""

    @abstractmethod
    def create_ticket(self, new: NewTicket) -> Ticket:
        """Open the ticket with ``new.requester`` as its requester and return it as read back.

        Idempotent: when :meth:`find_created` finds the ticket of an earlier attempt, that ticket is
        returned and nothing new is created. Reads back and raises :class:`WriteNotApplied` when the
        helpdesk stored something else than asked (another requester or author)."""
