"""The Redmine connector: read issues, post notes, close on confirmation, hand back, webhooks, polling.

Redmine facts this code is built on (Redmine's source, checked live on Redmine 5.0.4):

- Every write is ``PUT /issues/{id}.json`` answered **204 with an empty body**, and Redmine drops
  silently what the plugin's role may not do: ``private_notes`` without "Set notes as private" (the
  note is posted PUBLIC), ``status_id`` outside the workflow or without "Edit issues". So every write
  is read back and :class:`~connectors.base.WriteNotApplied` is raised when it was not applied.
- The requester is the issue's **author**. Redmine has no separate "writer": an issue typed in by an
  agent for someone else has the agent as author, so ``created_by_agent`` is only known to be true
  when the author is the plugin's own account.
- States come from statuses (``/issue_statuses.json``, cached): ``is_closed`` -> closed; the
  configured "solved" status (default data: "Resolved", not closed) -> solved; "Feedback" ->
  waiting; "New" -> new; anything else -> open.
- Notes are written in Redmine's text formatting, which REST cannot read: it is configured here.
- A PUT that was sent but not answered (a slow Redmine, a proxy timing out) may land later: the
  issue is read back for ``unknown_write_wait_s`` until the write shows (our marker in a journal,
  the status set) before it counts as lost; posting again at once would double the note.
- Opening an issue on someone's behalf (:class:`~connectors.base.TicketCreator`): ``POST
  /issues.json`` with the admin key and ``X-Redmine-Switch-User: <login>``
  (``ApplicationController#find_current_user``), so
  the person is the author (= the requester) and Redmine applies *their* rights ("Add issues").
  Redmine ignores the header for a non-admin key and creates the issue as the key's owner: the
  author is read back. A login that is not an active user answers 412.
"""

from __future__ import annotations

import html
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import ValidationError

from connectors.base import (
    MARKER_RE,
    N_,
    AuthenticationError,
    Checkable,
    CheckResult,
    Comment,
    Connector,
    ConnectorError,
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
from connectors.readback import await_write

from . import webhook
from .client import RedmineClient, SwitchUserRefused
from .payloads import (
    Issue,
    IssueEnvelope,
    IssueList,
    IssueStatus,
    IssueStatusList,
    Journal,
    MembershipList,
    ProjectEnvelope,
    RoleEnvelope,
    User,
    UserEnvelope,
    UserList,
)

log = logging.getLogger(__name__)

SOURCE = "redmine"
#: Polls re-read this much before the watermark: Redmine compares to the second, and an issue saved
#: while a poll ran may carry an updated_on just before the newest one seen.
POLL_OVERLAP = timedelta(seconds=5)
POLL_PAGE = 100
_TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

#: The rights the plugin's account needs, with the words Redmine's role page uses.
REQUIRED_PERMISSIONS: tuple[tuple[str, str, str], ...] = (
    ("view_issues", "View Issues", N_("the plugin cannot read issues")),
    ("add_issue_notes", "Add notes", N_("suggestions and drafts cannot be posted")),
    (
        "set_notes_private",
        "Set notes as private",
        N_("Redmine would post the private agent drafts as PUBLIC notes (the plugin then stops with an error)"),
    ),
    ("view_private_notes", "View private notes", N_("the plugin cannot read back its private notes to confirm them")),
    ("edit_issues", "Edit issues", N_("Redmine ignores status changes: issues cannot be closed on confirmation")),
)

# --------------------------------------------------------------------------------------------------
# Rendering an OutgoingMessage as a Redmine note
# --------------------------------------------------------------------------------------------------

TextFormatting = Literal["textile", "common_mark", "markdown"]

#: A URL inside user text: left as typed (Redmine auto-links it, as when a person types it). No
#: markup characters inside, so a "URL" cannot smuggle link syntax; trailing punctuation is text.
_URL_RE = re.compile(r"https?://[A-Za-z0-9\-._~:/?#%+=&;,$]+")
_URL_TRAILING = ".,;:?"
#: Text that may follow a URL directly: closing punctuation, then a space or the end.
_ENDS_URL_RE = re.compile(r"[.,;:)]+(\s|$)")
#: A link we render ourselves must be a plain http(s) URL, auto-linked by both formatters.
_SAFE_LINK_RE = re.compile(r"https?://[A-Za-z0-9\-._~:/?#%+=&;,$@!*'()]+")
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
#: Textile: characters that open markup anywhere (links, images, tables, macros, HTML).
_TEXTILE_ALWAYS = set('"![]{}|')
#: Textile: span markers, harmless between two letters/digits ("Wi-Fi", "snake_case").
_TEXTILE_SPAN = set("*_+-^~@%?=#")
#: Textile block signatures at the start of a line ("h1. ", "bq. ", "p(x). ", "fn1. ").
_TEXTILE_BLOCK_RE = re.compile(r"^(\s*[A-Za-z]+\d*[^\s.]*)\.(?=\s|$)")
#: Markdown: escaped with a backslash wherever they are.
_MD_ALWAYS = set("\\`*[]!|~{}#$^")
#: Markdown: escaped unless between two letters/digits (CommonMark ignores intraword ``_``).
_MD_SPAN = set("_")
#: Markdown line starts: lists, quotes, headings, thematic breaks, setext underlines, ordered lists.
_MD_LINE_START_RE = re.compile(r"^([-+=>]|\d+[.)])")


def _intraword(text: str, i: int) -> bool:
    return 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()


def _escape_plain_textile(text: str) -> str:
    out = []
    for i, ch in enumerate(text):
        if ch in _HTML:
            out.append(_HTML[ch])
        elif ch in _TEXTILE_ALWAYS or (ch in _TEXTILE_SPAN and not _intraword(text, i)):
            out.append(f"&#{ord(ch)};")
        else:
            out.append(ch)
    return "".join(out)


def _escape_plain_markdown(text: str) -> str:
    out = []
    for i, ch in enumerate(text):
        if ch in _HTML:
            out.append(_HTML[ch])
        elif ch in _MD_ALWAYS or (ch in _MD_SPAN and not _intraword(text, i)):
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _split_urls(line: str) -> list[tuple[str, bool]]:
    """``line`` cut into (piece, is_url) pieces."""
    pieces: list[tuple[str, bool]] = []
    pos = 0
    for m in _URL_RE.finditer(line):
        url = m.group(0).rstrip(_URL_TRAILING)
        if not url.split("://", 1)[1]:
            continue
        pieces.append((line[pos : m.start()], False))
        pieces.append((url, True))
        pos = m.start() + len(url)
    pieces.append((line[pos:], False))
    return [p for p in pieces if p[0]]


def escape_text(text: str, formatting: TextFormatting) -> str:
    """Plain text -> markup that shows exactly ``text``: no HTML, no formatter syntax, no links
    except bare http(s) URLs (auto-linked by Redmine as if typed)."""
    lines = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.strip() if formatting != "textile" else raw.rstrip()
        escape = _escape_plain_textile if formatting == "textile" else _escape_plain_markdown
        out = ""
        after_url = False
        for piece, is_url in _split_urls(line):
            escaped = piece if is_url else escape(piece)
            if after_url and not escaped[0].isspace() and not _ENDS_URL_RE.match(escaped):
                # Both auto-linkers would take text glued to the URL (escapes included) into the link.
                escaped = " " + escaped
            out += escaped
            after_url = is_url
        if formatting == "textile":
            out = _TEXTILE_BLOCK_RE.sub(r"\1&#46;", out)
        elif _MD_LINE_START_RE.match(out):
            out = "\\" + out if not out[0].isdigit() else re.sub(r"^(\d+)([.)])", r"\1\\\2", out)
        lines.append(out)
    return "\n".join(lines)


def _heading(text: str, formatting: TextFormatting) -> str:
    return ("h3. " if formatting == "textile" else "### ") + escape_text(" ".join(text.split()), formatting)


def _bold(text: str, formatting: TextFormatting) -> str:
    inner = escape_text(" ".join(text.split()), formatting)
    return f"*{inner}*" if formatting == "textile" else f"**{inner}**"


def _link_line(url: str) -> str:
    """A URL we link to, bare on its own line (auto-linked). Anything but a plain http(s) URL is a bug
    upstream: it is left out rather than shown half-linked."""
    url = url.strip()
    if _SAFE_LINK_RE.fullmatch(url):
        return url
    log.warning("redmine.render_unsafe_link")
    return "(link left out: not a plain http(s) address)"


def render_note(message: OutgoingMessage, formatting: TextFormatting) -> str:
    """The note text for ``message`` in Redmine's text formatting.

    Links are written as their label on one line and the bare URL on the next: both formatters
    auto-link a bare http(s) URL, so the link works whatever formatting Redmine really uses (it is
    not readable over REST), and it stays readable in the plain-text part of notification e-mails.
    The marker goes on a last line ``ref ha-...`` so that a retry finds the note.
    """
    if not MARKER_RE.fullmatch(message.marker):
        raise ValueError("marker must be 'ha-' followed by 12 hex digits")
    blocks: list[str] = []
    if message.heading.strip():
        blocks.append(_heading(message.heading, formatting))
    blocks.extend(escape_text(p.strip(), formatting) for p in message.paragraphs if p.strip())
    for entry in message.entries:
        blocks.append(_bold(entry.title, formatting) + "\n" + escape_text(entry.text.strip(), formatting))
    for link in message.links:
        blocks.append(escape_text(link.label.strip(), formatting) + ":\n" + _link_line(link.url))
    if message.facts:
        blocks.append(
            "\n".join(
                f"{_bold(label + ':', formatting)} {escape_text(value, formatting)}" for label, value in message.facts
            )
        )
    if message.footer.strip():
        blocks.append(escape_text(message.footer.strip(), formatting))
    blocks.append(f"ref {message.marker}")
    return "\n\n".join(blocks)


_MD_UNESCAPE_RE = re.compile(r"\\([!-/:-@\[-`{-~])")


def note_to_text(notes: str, formatting: TextFormatting) -> str:
    """A note as plain text: our own escapes undone (entities, backslashes); other markup kept."""
    if formatting != "textile":
        notes = _MD_UNESCAPE_RE.sub(r"\1", notes)
    return html.unescape(notes)


# --------------------------------------------------------------------------------------------------
# The connector
# --------------------------------------------------------------------------------------------------


class RedmineConnector(
    Connector, TicketReader, TicketStateReader, TicketWriter, WebhookSource, TicketPoller, Scoped, Checkable,
    TicketCreator,
):
    """Redmine 5.x-7.x over its REST API, as the user who owns ``api_key`` (the plugin's account).

    Plain arguments (the registry reads the settings and passes secrets as ``str``):
    ``projects`` restricts everything - webhooks, polling, checks - to these projects (identifiers or
    ids; exactly these, not their subprojects: list a subproject to include it); ``closed_status`` /
    ``reopen_status`` / ``solved_status`` are status names (empty closed_status: the first
    ``is_closed`` status); ``polling`` only changes how ``check()`` judges missing webhook secrets;
    ``unknown_write_wait_s`` bounds the read-back of a write Redmine did not answer (``sleep``:
    tests). ``create_project`` (identifier) and ``create_tracker`` (name; empty: the project's default) are
    where issues opened on people's behalf go; empty ``create_project``: no issue is opened.
    """

    name = SOURCE

    def __init__(
        self,
        url: str,
        api_key: str,
        projects: Iterable[str] = (),
        webhook_secret: str = "",
        plugin_token: str = "",
        closed_status: str = "",
        reopen_status: str = "",
        text_formatting: TextFormatting = "textile",
        timeout_s: float = 15,
        verify_tls: bool = True,
        *,
        solved_status: str = "Resolved",
        polling: bool = False,
        session: Any = None,
        unknown_write_wait_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        create_project: str = "",
        create_tracker: str = "",
    ) -> None:
        self.url = url.rstrip("/")
        self.projects = tuple(projects)
        self._webhook_secret = webhook_secret
        self._plugin_token = plugin_token
        self.closed_status = closed_status
        self.reopen_status = reopen_status
        self.solved_status = solved_status
        self.text_formatting: TextFormatting = text_formatting
        self.polling = polling
        self.unknown_write_wait_s = unknown_write_wait_s
        self._sleep = sleep
        self.client = RedmineClient(self.url, api_key, timeout_s=timeout_s, verify_tls=verify_tls, session=session)
        self._statuses: dict[int, IssueStatus] | None = None
        self._me: User | None = None
        #: Configured project -> its id (Redmine identifiers never change, so this is never stale).
        self._project_ids: dict[str, int] = {}
        self.create_project = create_project.strip()
        self.create_tracker = create_tracker.strip()
        self._create_tracker_id: int | None = None

    def close(self) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return f"RedmineConnector({self.url!r})"

    # -- lookups ---------------------------------------------------------------------------------

    def statuses(self, *, refresh: bool = False) -> dict[int, IssueStatus]:
        if self._statuses is None or refresh:
            data = IssueStatusList.model_validate(self.client.get("/issue_statuses.json"))
            self._statuses = {s.id: s for s in data.issue_statuses}
        return self._statuses

    def me(self) -> User:
        """The plugin's own account (cached)."""
        if self._me is None:
            self._me = UserEnvelope.model_validate(self.client.get("/users/current.json")).user
        return self._me

    def _status_by_name(self, name: str) -> IssueStatus | None:
        wanted = name.strip().casefold()
        return next((s for s in self.statuses().values() if s.name.casefold() == wanted), None)

    def closed_status_id(self) -> int:
        if self.closed_status:
            status = self._status_by_name(self.closed_status)
            if status is None:
                raise RejectedByHelpdesk(f"redmine.closed_status {self.closed_status!r} is not a Redmine status")
            if not status.is_closed:
                raise RejectedByHelpdesk(
                    f"redmine.closed_status {self.closed_status!r} is not a closed status in Redmine"
                )
            return status.id
        status = next((s for s in self.statuses().values() if s.is_closed), None)
        if status is None:
            raise RejectedByHelpdesk("Redmine has no closed status (Administration > Issue statuses)")
        return status.id

    def reopen_status_id(self) -> int | None:
        if not self.reopen_status:
            return None
        status = self._status_by_name(self.reopen_status)
        if status is None:
            raise RejectedByHelpdesk(f"redmine.reopen_status {self.reopen_status!r} is not a Redmine status")
        return status.id

    def _state(self, status_id: int | None, name: str, is_closed: bool | None) -> TicketState:
        known = self.statuses().get(status_id) if status_id is not None else None
        closed = is_closed if is_closed is not None else bool(known and known.is_closed)
        if closed:
            return "closed"
        lowered = name.casefold()
        if self.solved_status and lowered == self.solved_status.casefold():
            return "solved"
        if lowered == "feedback":
            return "waiting"
        if lowered == "new":
            return "new"
        return "open"

    def _user_email(self, user_id: int) -> str | None:
        try:
            return UserEnvelope.model_validate(self.client.get(f"/users/{user_id}.json")).user.mail
        except (NotFound, PermissionDenied):
            return None

    # -- reading -------------------------------------------------------------------------------

    def _issue(self, ticket_id: str, include: str = "journals") -> Issue:
        if not str(ticket_id).isdigit():
            raise NotFound(f"not a Redmine issue id: {ticket_id!r}")
        try:
            return IssueEnvelope.model_validate(
                self.client.get(f"/issues/{ticket_id}.json", {"include": include})
            ).issue
        except ValidationError as e:
            raise ConnectorError(f"Redmine issue {ticket_id}: unexpected JSON ({e.error_count()} errors)") from e

    def ticket_state(self, ticket_id: str) -> TicketState:
        """One ``GET /issues/N.json`` without journals: the state only (confirmation pages)."""
        status = self._issue(ticket_id, include="").status
        if status is None:
            return self._state(None, "", None)
        return self._state(status.id, status.name, status.is_closed)

    def get_ticket(self, ticket_id: str) -> Ticket:
        issue = self._issue(ticket_id)
        author = None
        if issue.author is not None:
            author = Person(id=str(issue.author.id), name=issue.author.name, email=self._user_email(issue.author.id))
        status = issue.status
        state = self._state(
            status.id if status else None, status.name if status else "", status.is_closed if status else None
        )
        category = tuple(x.name for x in (issue.tracker, issue.category) if x is not None and x.name)
        return Ticket(
            source=SOURCE,
            id=str(issue.id),
            subject=issue.subject,
            body=issue.description or "",
            state=state,
            status_name=status.name if status else "",
            requester=author,
            author=author,
            created_by_agent=bool(issue.author and issue.author.id == self.me().id),
            is_private=issue.is_private,
            category=category,
            scope=str(issue.project.id) if issue.project is not None else "",
            created_at=issue.created_on,
            updated_at=issue.updated_on,
            url=f"{self.url}/issues/{issue.id}",
            comments=[self._comment(j) for j in issue.journals if (j.notes or "").strip()],
            outcomes=self._outcomes(issue),
        )

    def _comment(self, j: Journal) -> Comment:
        notes = j.notes or ""
        return Comment(
            id=str(j.id),
            author=Person(id=str(j.user.id), name=j.user.name) if j.user else None,
            body=note_to_text(notes, self.text_formatting),
            is_private=j.private_notes,
            kind="comment",
            created_at=j.created_on,
            marker=find_marker(notes),
        )

    def _outcomes(self, issue: Issue) -> list[HelpdeskOutcome]:
        """Closings (solved) and re-openings of a solved/closed issue (not_solved), oldest first."""
        statuses = self.statuses()
        author_id = issue.author.id if issue.author else None
        outcomes = []
        for j in issue.journals:
            change = j.status_change()
            if change is None:
                continue
            old, new = statuses.get(change[0]), statuses.get(change[1])
            if old is None or new is None:
                continue
            by_requester = j.user is not None and j.user.id == author_id
            old_state = self._state(old.id, old.name, old.is_closed)
            transition = f"status {old.name} -> {new.name}"
            note = (j.notes or "").strip()
            if new.is_closed and not old.is_closed:
                outcomes.append(
                    HelpdeskOutcome(kind="solved", by_requester=by_requester, at=j.created_on, detail=transition)
                )
            elif (
                old_state in ("solved", "closed")
                and not new.is_closed
                and self._state(new.id, new.name, False) != "solved"
            ):
                outcomes.append(
                    HelpdeskOutcome(
                        kind="not_solved", by_requester=by_requester, at=j.created_on, detail=note or transition
                    )
                )
        return outcomes

    # -- writing -------------------------------------------------------------------------------

    def _put(self, ticket_id: str, fields: dict[str, Any], *, landed: Callable[[Issue], bool]) -> None:
        """PUT the issue. When Redmine does not answer a PUT it received, read the issue back until
        ``landed(issue)`` (the write is visible) or ``unknown_write_wait_s`` passes (then
        WriteOutcomeUnknown: the retry re-reads and decides)."""
        try:
            self.client.put(f"/issues/{ticket_id}.json", {"issue": fields})
        except WriteOutcomeUnknown as e:
            await_write(
                lambda: True if landed(self._issue(ticket_id)) else None,
                e,
                wait_s=self.unknown_write_wait_s,
                what=f"redmine PUT issue {ticket_id}",
                sleep=self._sleep,
            )

    def _shows(self, issue: Issue, marker: str, with_note: bool, status_id: int | None) -> bool:
        """Whether one PUT (atomic in Redmine: its note and status change land together) is visible:
        the note with ``marker`` when it carried one, else the status it set. A status the role may
        not set never shows; the note still does, and the read-back then reports it."""
        if with_note:
            return self._journal_with_marker(issue, marker) is not None
        return status_id is not None and issue.status is not None and issue.status.id == status_id

    def _journal_with_marker(self, issue: Issue, marker: str) -> Journal | None:
        return next((j for j in issue.journals if marker in (j.notes or "")), None)

    def _check_note(self, ticket_id: str, journal: Journal | None, marker: str, private: bool) -> Journal:
        if journal is None:
            raise WriteNotApplied(
                f"Redmine issue {ticket_id}: the note {marker} is missing after posting (HTTP 204): the plugin's "
                "role lacks 'Add notes'" + (", or 'View private notes' to read it back" if private else "")
            )
        if private and not journal.private_notes:
            log.error("redmine.private_note_leaked ticket=%s journal=%s", ticket_id, journal.id)
            raise WriteNotApplied(
                f"LEAK: Redmine issue {ticket_id}: the PRIVATE note {marker} was posted as a PUBLIC note "
                f"(journal {journal.id}), visible to the requester: the plugin's role lacks 'Set notes as private' "
                "and Redmine dropped the flag silently. Make the note private or delete it in Redmine, and grant "
                "'Set notes as private' (Administration > Roles and permissions)."
            )
        if not private and journal.private_notes:
            raise WriteNotApplied(f"Redmine issue {ticket_id}: the public note {marker} was recorded as private")
        return journal

    def post_comment(self, ticket_id: str, message: OutgoingMessage, *, private: bool) -> Comment:
        issue = self._issue(ticket_id)
        existing = self._journal_with_marker(issue, message.marker)
        if existing is None:
            self._put(
                ticket_id,
                {"notes": render_note(message, self.text_formatting), "private_notes": private},
                landed=lambda i: self._journal_with_marker(i, message.marker) is not None,
            )
            issue = self._issue(ticket_id)
            existing = self._journal_with_marker(issue, message.marker)
        else:
            log.info("redmine.note_already_posted ticket=%s journal=%s", ticket_id, existing.id)
        journal = self._check_note(ticket_id, existing, message.marker, private)
        log.info("redmine.note_posted ticket=%s journal=%s private=%s", ticket_id, journal.id, private)
        return self._comment(journal)

    def close_confirmed(self, ticket_id: str, message: OutgoingMessage) -> Ticket:
        issue = self._issue(ticket_id)
        if issue.status is not None and self.statuses().get(issue.status.id, issue.status).is_closed:
            return self.get_ticket(ticket_id)
        closed_id = self.closed_status_id()
        fields: dict[str, Any] = {"status_id": closed_id}
        if self._journal_with_marker(issue, message.marker) is None:
            fields.update(notes=render_note(message, self.text_formatting), private_notes=False)
        self._put(ticket_id, fields, landed=lambda i: self._shows(i, message.marker, "notes" in fields, closed_id))
        after = self._issue(ticket_id)
        if after.status is None or after.status.id != closed_id:
            raise WriteNotApplied(
                f"Redmine issue {ticket_id} is still {after.status.name if after.status else '?'}: the workflow does "
                f"not allow {issue.status.name if issue.status else '?'} -> {self.statuses()[closed_id].name} on "
                f"tracker {issue.tracker.name if issue.tracker else '?'} for the plugin's role, or the role lacks "
                "'Edit issues' (Administration > Workflow, Roles and permissions)"
            )
        self._check_note(ticket_id, self._journal_with_marker(after, message.marker), message.marker, False)
        log.info("redmine.closed ticket=%s status=%s", ticket_id, closed_id)
        return self.get_ticket(ticket_id)

    def hand_back(self, ticket_id: str, message: OutgoingMessage) -> Ticket:
        issue = self._issue(ticket_id)
        fields: dict[str, Any] = {}
        if self._journal_with_marker(issue, message.marker) is None:
            fields.update(notes=render_note(message, self.text_formatting), private_notes=True)
        reopen_id = None
        status = issue.status
        if status is not None and self._state(status.id, status.name, status.is_closed) == "solved":
            reopen_id = self.reopen_status_id()
            if reopen_id is not None:
                fields["status_id"] = reopen_id
        if fields:
            self._put(
                ticket_id, fields, landed=lambda i: self._shows(i, message.marker, "notes" in fields, reopen_id)
            )
        after = self._issue(ticket_id)
        self._check_note(ticket_id, self._journal_with_marker(after, message.marker), message.marker, True)
        if reopen_id is not None and (after.status is None or after.status.id != reopen_id):
            raise WriteNotApplied(
                f"Redmine issue {ticket_id} is still {after.status.name if after.status else '?'}: the workflow does "
                f"not allow {status.name if status else '?'} -> {self.reopen_status} for the plugin's role, or the "
                "role lacks 'Edit issues'"
            )
        log.info("redmine.handed_back ticket=%s reopened=%s", ticket_id, reopen_id is not None)
        return self.get_ticket(ticket_id)

    # -- scope -----------------------------------------------------------------------------------

    def project_ids(self) -> dict[str, int]:
        """The configured projects' ids. A project that does not exist (or that the plugin's account
        cannot see) matches nothing; it is looked up again next time, and ``check`` names it."""
        for ident in self.projects:
            if ident in self._project_ids:
                continue
            try:
                project = ProjectEnvelope.model_validate(self.client.get(f"/projects/{ident}.json")).project
            except (NotFound, PermissionDenied):
                log.warning("redmine.project_unknown project=%s: in redmine.projects but not visible", ident)
                continue
            self._project_ids[ident] = project.id
        return dict(self._project_ids)

    def out_of_scope(self, ticket: Ticket) -> str | None:
        if not self.projects:
            return None
        if ticket.scope and ticket.scope in {str(i) for i in self.project_ids().values()}:
            return None
        return f"project id {ticket.scope or '?'} is not in redmine.projects ({', '.join(self.projects)})"

    # -- webhooks --------------------------------------------------------------------------------

    def authenticate(self, headers: Mapping[str, str], body: bytes, args: Mapping[str, str]) -> None:
        webhook.authenticate(headers, body, args, webhook_secret=self._webhook_secret, plugin_token=self._plugin_token)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[TicketEvent]:
        return webhook.parse(body)

    # -- polling ---------------------------------------------------------------------------------

    def poll(self, since: str | None) -> tuple[list[TicketEvent], str | None]:
        """Issues created or updated since ``since`` (an ISO timestamp), per configured project.

        The first run (``since`` None) returns no events and the server's current time: issues
        that existed before the plugin was set up are not answered.
        """
        if since is None:
            self.client.get("/issues.json", {"status_id": "*", "limit": 1})
            now = self.client.last_server_time or datetime.now(UTC)
            return [], now.astimezone(UTC).strftime(_TS_FORMAT)
        start = _parse_ts(since) - POLL_OVERLAP
        seen: dict[tuple[int, str], TicketEvent] = {}
        newest = _parse_ts(since)
        for project in self.projects or (None,):
            for issue in self._changed_issues(project, start):
                if issue.updated_on is None:
                    continue
                stamp = issue.updated_on.astimezone(UTC)
                newest = max(newest, stamp)
                key = stamp.strftime(_TS_FORMAT)
                kind: Literal["created", "updated"] = "created" if issue.created_on == issue.updated_on else "updated"
                seen[(issue.id, key)] = TicketEvent(
                    source=SOURCE,
                    ticket_id=str(issue.id),
                    kind=kind,
                    delivery_key=f"redmine:poll:{issue.id}:{key}",
                    occurred_at=issue.updated_on,
                    vendor_event="poll",
                )
        events = sorted(seen.values(), key=lambda e: (e.occurred_at or newest, int(e.ticket_id)))
        log.info("redmine.polled events=%s", len(events))
        return events, newest.strftime(_TS_FORMAT)

    def _changed_issues(self, project: str | None, start: datetime) -> list[Issue]:
        """Every issue with updated_on >= start, all pages. When an issue moves while paging (it was
        updated, so it jumps to the end and shifts the rest by one), the scan is repeated once."""
        for _attempt in range(2):
            issues: dict[int, Issue] = {}
            moved = False
            offset = 0
            while True:
                params: dict[str, Any] = {
                    "status_id": "*",
                    "updated_on": ">=" + start.strftime(_TS_FORMAT),
                    "sort": "updated_on,id",
                    "limit": POLL_PAGE,
                    "offset": offset,
                }
                if project:
                    # Exactly the configured project, as the pipeline's scope check: Redmine would
                    # add its subprojects' issues by default.
                    params["project_id"] = project
                    params["subproject_id"] = "!*"
                page = IssueList.model_validate(self.client.get("/issues.json", params))
                for raw in page.issues:
                    try:
                        issue = Issue.model_validate(raw)
                    except ValidationError:
                        log.warning("redmine.poll_bad_issue id=%s", raw.get("id"))
                        continue
                    moved = moved or issue.id in issues
                    issues[issue.id] = issue
                offset += len(page.issues)
                if not page.issues or offset >= page.total_count:
                    break
            if not moved:
                break
            log.info("redmine.poll_rescan project=%s", project)
        return list(issues.values())

    # -- check -----------------------------------------------------------------------------------

    def check(self) -> list[CheckResult]:
        results: list[CheckResult] = []
        try:
            self._me = None
            me = self.me()
        except TransientConnectorError as e:
            return [CheckResult.of(N_("reachable"), False, N_("{error}. Check redmine.url and the network."), error=e)]
        except AuthenticationError:
            return [
                CheckResult.of(N_("reachable"), True, N_("Redmine answers at {url}"), url=self.url),
                CheckResult.of(N_("rest_api"), True, N_("the REST API answers")),
                CheckResult.of(
                    N_("api_key"),
                    False,
                    N_("Redmine refused the API key (HTTP 401): copy the plugin user's key from "
                       "My account > API access key into redmine.api_key"),
                ),
            ]
        except PermissionDenied:
            return [
                CheckResult.of(N_("reachable"), True, N_("Redmine answers at {url}"), url=self.url),
                CheckResult.of(
                    N_("rest_api"),
                    False,
                    N_("Redmine answered 403: the REST API is disabled. Enable it in Administration > "
                       "Settings > API > 'Enable REST web service'"),
                ),
            ]
        except ConnectorError as e:
            return [CheckResult.of(N_("reachable"), False, Text.plain(e))]
        results.append(CheckResult.of(N_("reachable"), True, N_("Redmine answers at {url}"), url=self.url))
        results.append(CheckResult.of(N_("rest_api"), True, N_("the REST API is enabled")))
        results.append(CheckResult.of(
            N_("api_key"), True,
            N_("the API key belongs to {login} (administrator)") if me.admin else N_("the API key belongs to {login}"),
            login=me.login or me.id,
        ))
        results.extend(self._check_rights(me))
        if self.create_project:
            results.extend(self._check_creation(me))
        results.extend(self._check_statuses())
        results.append(self._check_webhooks())
        return results

    def _project_roles(self, me: User) -> dict[str, list[int]] | CheckResult:
        """Role ids of the plugin user per project name (configured projects only, when set)."""
        user = UserEnvelope.model_validate(self.client.get("/users/current.json", {"include": "memberships"})).user
        by_id = {m.project.id: (m.project.name, [r.id for r in m.roles]) for m in user.memberships if m.project}
        if not self.projects:
            return {name: roles for name, roles in by_id.values()}
        out: dict[str, list[int]] = {}
        for ident in self.projects:
            try:
                project = ProjectEnvelope.model_validate(self.client.get(f"/projects/{ident}.json")).project
            except NotFound:
                return CheckResult.of(
                    N_("projects"),
                    False,
                    N_("project '{project}' (redmine.projects) does not exist or is not visible to {login}"),
                    project=ident, login=me.login,
                )
            out[project.identifier or ident] = by_id.get(project.id, ("", []))[1]
        return out

    def _check_rights(self, me: User) -> list[CheckResult]:
        if me.admin:
            return [
                CheckResult.of(
                    N_("right:{permission}"), True, N_("'{label}': the plugin's account is an administrator"),
                    permission=perm, label=label,
                )
                for perm, label, _ in REQUIRED_PERMISSIONS
            ]
        projects = self._project_roles(me)
        if isinstance(projects, CheckResult):
            return [projects]
        if not projects:
            return [
                CheckResult.of(
                    N_("projects"),
                    False,
                    N_("{login} is a member of no project: add it to the helpdesk projects with a role"),
                    login=me.login,
                )
            ]
        role_perms: dict[int, set[str]] = {}
        for roles in projects.values():
            for rid in roles:
                if rid not in role_perms:
                    role_perms[rid] = set(
                        RoleEnvelope.model_validate(self.client.get(f"/roles/{rid}.json")).role.permissions
                    )
        results = []
        for perm, label, consequence in REQUIRED_PERMISSIONS:
            missing = [name for name, roles in projects.items() if not any(perm in role_perms[r] for r in roles)]
            detail = (
                N_("{login} lacks '{label}' ({permission}) in project(s) {projects}: {consequence}. "
                   "Grant it in Administration > Roles and permissions")
                if missing
                else N_("'{label}' granted in {projects}")
            )
            results.append(CheckResult.of(
                N_("right:{permission}"), not missing, detail, login=me.login, label=label, permission=perm,
                projects=", ".join(missing or projects), consequence=Text.of(consequence),
            ))
        return results

    def _check_statuses(self) -> list[CheckResult]:
        results = []
        try:
            closed = self.statuses(refresh=True)[self.closed_status_id()]
            results.append(
                CheckResult.of(N_("closed_status"), True, N_("confirmed issues are set to {status}"),
                               status=closed.name)
            )
        except RejectedByHelpdesk as e:
            results.append(CheckResult.of(N_("closed_status"), False, Text.plain(e)))
        if self.solved_status and self._status_by_name(self.solved_status) is None:
            results.append(
                CheckResult.of(
                    N_("solved_status"),
                    False,
                    N_("no status named '{status}': resolved issues will not be recognised"),
                    status=self.solved_status,
                )
            )
        if self.reopen_status:
            try:
                self.reopen_status_id()
                results.append(CheckResult.of(
                    N_("reopen_status"), True, N_("refused issues go to {status}"), status=self.reopen_status
                ))
            except RejectedByHelpdesk as e:
                results.append(CheckResult.of(N_("reopen_status"), False, Text.plain(e)))
        try:
            results.append(self._check_workflow())
        except ConnectorError as e:
            results.append(CheckResult.of(N_("workflow"), False, N_("could not try the workflow: {error}"), error=e))
        return results

    def _check_workflow(self) -> CheckResult:
        """Whether the plugin may set the closed status, tried on the newest open issue (the workflow
        itself is not readable over REST; ``allowed_statuses`` gives the transitions from one issue's
        status). Meaningful only with 'Edit issues', checked apart: Redmine 5.0 lists workflow
        targets in allowed_statuses even to a role that may not change the status at all."""
        try:
            closed_id = self.closed_status_id()
        except RejectedByHelpdesk as e:
            return CheckResult.of(N_("workflow"), False, Text.plain(e))
        problems, tried = [], []
        for project in self.projects or (None,):
            params: dict[str, Any] = {"status_id": "o", "sort": "updated_on:desc", "limit": 1}
            if project:
                params["project_id"] = project
            listed = IssueList.model_validate(self.client.get("/issues.json", params)).issues
            if not listed:
                continue
            issue = self._issue(str(listed[0].get("id")), include="allowed_statuses")
            tried.append(f"#{issue.id}")
            if closed_id not in {s.id for s in issue.allowed_statuses}:
                problems.append(
                    f"#{issue.id} ({issue.tracker.name if issue.tracker else '?'}, "
                    f"{issue.status.name if issue.status else '?'})"
                )
        closed_name = self.statuses()[closed_id].name
        if problems:
            return CheckResult.of(
                N_("workflow"),
                False,
                N_("the workflow does not let the plugin's role set {status} on issue(s) {issues}: add the "
                   "transitions in Administration > Workflow"),
                status=closed_name, issues=", ".join(problems),
            )
        if not tried:
            return CheckResult.of(
                N_("workflow"),
                True,
                N_("no open issue to try the workflow on: the first close is read back and fails loudly if refused"),
            )
        return CheckResult.of(
            N_("workflow"), True, N_("the plugin's role may set {status} on {issues}"),
            status=closed_name, issues=", ".join(tried),
        )

    def _check_webhooks(self) -> CheckResult:
        if self._webhook_secret or self._plugin_token:
            if self._webhook_secret and self._plugin_token:
                accepted = N_("webhooks accepted: Redmine 7 signed, plugin token")
            elif self._webhook_secret:
                accepted = N_("webhooks accepted: Redmine 7 signed")
            else:
                accepted = N_("webhooks accepted: plugin token")
            return CheckResult.of(N_("webhooks"), True, accepted)
        if self.polling:
            return CheckResult.of(
                N_("webhooks"),
                True,
                N_("warning: no webhook secret or plugin token, so webhooks are refused; polling is on"),
            )
        return CheckResult.of(
            N_("webhooks"),
            False,
            N_("no redmine.webhook_secret or redmine.plugin_token, and polling is off: new issues will never "
               "be seen. Configure a webhook or set redmine.poll: true"),
        )

    # -- creating tickets ----------------------------------------------------------------------------

    def find_requester(self, login_or_email: str) -> Person | None:
        """The active Redmine user whose login or e-mail address is ``login_or_email``
        (``GET /users.json?name=``: administrators only; it matches login, names and mail, so the
        rows are filtered to an exact, case-insensitive login or mail here)."""
        value = clean_lookup(login_or_email)
        wanted = value.casefold()
        users: list[User] = []
        offset = 0
        try:
            while True:
                page = UserList.model_validate(
                    self.client.get("/users.json", {"name": value, "status": 1, "limit": 100, "offset": offset})
                )
                users.extend(page.users)
                offset += len(page.users)
                if not page.users or offset >= page.total_count or offset >= 500:
                    break
        except PermissionDenied as e:
            raise PermissionDenied(
                "Redmine lists users only to administrators: redmine.api_key must be an administrator's key to "
                "find people and to open issues as them (X-Redmine-Switch-User)"
            ) from e
        found = [u for u in users if (u.login or "").casefold() == wanted] or [
            u for u in users if (u.mail or "").casefold() == wanted
        ]
        if not found:
            log.info("redmine.requester_not_found by=%s", "email" if "@" in value else "login")
            return None
        if len(found) > 1:
            raise RejectedByHelpdesk(f"{len(found)} Redmine users match this address: ask for the login instead")
        user = found[0]
        return Person(id=str(user.id), name=user.name, login=user.login, email=user.mail)

    def find_created(self, new: NewTicket) -> Ticket | None:
        """The newest issue of ``new.requester`` whose description holds ``new.marker``
        (``/issues.json`` with ``author_id`` and ``description=~marker``, any status)."""
        if not new.requester.id.isdigit():
            return None
        params: dict[str, Any] = {
            "status_id": "*",
            "author_id": new.requester.id,
            "description": "~" + new.marker,
            "sort": "id:desc",
            "limit": 10,
        }
        if self.create_project:
            params["project_id"] = self.create_project
        for raw in IssueList.model_validate(self.client.get("/issues.json", params)).issues:
            try:
                issue = Issue.model_validate(raw)
            except ValidationError:
                continue
            if new.marker in (issue.description or "") and issue.author and str(issue.author.id) == new.requester.id:
                return self.get_ticket(str(issue.id))
        return None

    def create_ticket(self, new: NewTicket) -> Ticket:
        """``POST /issues.json`` in ``create_project`` as the person (``X-Redmine-Switch-User``), the
        description escaped in the text formatting with the marker on its last line, then read back:
        the author must be the person. Idempotent through :meth:`find_created`."""
        if not self.create_project:
            raise RejectedByHelpdesk("redmine.create_project is not set: no project to open issues in")
        if not new.requester.id.isdigit():
            raise NotFound("the requester has no Redmine account: Redmine opens issues only as an existing user")
        existing = self.find_created(new)
        if existing is not None:
            log.info("redmine.issue_already_created ticket=%s", existing.id)
            return existing
        login = new.requester.login or self._login_of(int(new.requester.id))
        fields: dict[str, Any] = {
            "project_id": self.create_project,
            "subject": new.subject,
            "description": render_note(new.as_message(), self.text_formatting),
        }
        tracker_id = self.create_tracker_id()
        if tracker_id is not None:
            fields["tracker_id"] = tracker_id
        try:
            data = self.client.post("/issues.json", {"issue": fields}, switch_user=login)
        except SwitchUserRefused as e:
            raise NotFound(
                f"Redmine has no active user {login!r} to open the issue as (X-Redmine-Switch-User answered 412): "
                "the account may be locked or renamed"
            ) from e
        except PermissionDenied as e:
            raise PermissionDenied(
                f"Redmine does not let {login} add issues in project {self.create_project}: give their role 'Add "
                "issues' in Administration > Roles and permissions, or make them a member of the project"
            ) from e
        except NotFound as e:
            raise NotFound(
                f"project {self.create_project!r} (redmine.create_project) does not exist or {login} cannot see it: "
                "make them a member of the project"
            ) from e
        except RejectedByHelpdesk as e:
            raise self._explain_refused_issue(e, int(new.requester.id), login) from e
        try:
            issue_id = IssueEnvelope.model_validate(data).issue.id
        except ValidationError as e:
            raise ConnectorError("Redmine answered the new issue with unexpected JSON") from e
        ticket = self.get_ticket(str(issue_id))
        if ticket.author is None or ticket.author.id != new.requester.id:
            raise WriteNotApplied(
                f"Redmine created issue #{issue_id} as {ticket.author.name if ticket.author else 'nobody'}, not as "
                f"{login}: Redmine ignores X-Redmine-Switch-User unless redmine.api_key is an administrator's key"
            )
        log.info("redmine.issue_created ticket=%s", issue_id)
        return ticket

    def _explain_refused_issue(self, error: RejectedByHelpdesk, user_id: int, login: str) -> ConnectorError:
        """Redmine 5 answers a person who may not add issues in the project with 422 "Project cannot be
        blank" (the project is dropped from the safe attributes), in the person's language: their
        memberships are read to tell a missing right from a real validation error."""
        try:
            project = ProjectEnvelope.model_validate(self.client.get(f"/projects/{self.create_project}.json")).project
            user = UserEnvelope.model_validate(
                self.client.get(f"/users/{user_id}.json", {"include": "memberships"})
            ).user
            membership = next((m for m in user.memberships if m.project and m.project.id == project.id), None)
            if membership is None:
                return PermissionDenied(
                    f"{login} is not a member of project {project.name}, so Redmine does not let them add issues "
                    f"there (it answered: {error}). Make them a member with a role that has 'Add issues'"
                )
            perms = {
                p
                for r in membership.roles
                for p in RoleEnvelope.model_validate(self.client.get(f"/roles/{r.id}.json")).role.permissions
            }
        except ConnectorError:
            return error
        if "add_issues" not in perms:
            roles = ", ".join(r.name for r in membership.roles) or "none"
            return PermissionDenied(
                f"{login}'s role(s) in {project.name} ({roles}) lack 'Add issues' (it answered: {error}): grant it "
                "in Administration > Roles and permissions"
            )
        return error

    def _login_of(self, user_id: int) -> str:
        login = UserEnvelope.model_validate(self.client.get(f"/users/{user_id}.json")).user.login
        if not login:
            raise NotFound(f"Redmine user {user_id} has no login to open an issue as")
        return login

    def create_tracker_id(self) -> int | None:
        """The id of ``create_tracker`` in ``create_project`` (cached), None when no tracker is configured."""
        if not self.create_tracker:
            return None
        if self._create_tracker_id is None:
            project = ProjectEnvelope.model_validate(
                self.client.get(f"/projects/{self.create_project}.json", {"include": "trackers"})
            ).project
            wanted = self.create_tracker.casefold()
            tracker = next((t for t in project.trackers if t.name.casefold() == wanted), None)
            if tracker is None:
                names = ", ".join(t.name for t in project.trackers) or "none"
                raise RejectedByHelpdesk(
                    f"redmine.create_tracker {self.create_tracker!r} is not a tracker of project "
                    f"{self.create_project}; its trackers: {names}"
                )
            self._create_tracker_id = tracker.id
        return self._create_tracker_id

    def _check_creation(self, me: User) -> list[CheckResult]:
        """Whether issues can be opened on people's behalf in ``create_project``."""
        results = [
            CheckResult.of(
                N_("create:admin_key"),
                me.admin,
                N_("the API key is an administrator's: issues can be opened as the person")
                if me.admin
                else N_("{login} is not an administrator: Redmine ignores X-Redmine-Switch-User and /users.json is "
                        "refused, so people cannot be found nor issues opened as them. Use an administrator's API key"),
                login=me.login,
            )
        ]
        try:
            project = ProjectEnvelope.model_validate(
                self.client.get(f"/projects/{self.create_project}.json", {"include": "trackers,enabled_modules"})
            ).project
        except NotFound:
            results.append(
                CheckResult.of(
                    N_("create:project"),
                    False,
                    N_("project '{project}' (redmine.create_project) does not exist or is not visible"),
                    project=self.create_project,
                )
            )
            return results
        modules = {m.name for m in project.enabled_modules}
        if project.enabled_modules and "issue_tracking" not in modules:
            results.append(
                CheckResult.of(
                    N_("create:project"),
                    False,
                    N_("project {project} has the 'Issue tracking' module off: turn it on in its Settings"),
                    project=project.name,
                )
            )
        else:
            results.append(CheckResult.of(
                N_("create:project"), True, N_("issues are opened in {project}"), project=project.name
            ))
        try:
            tracker_id = self.create_tracker_id()
            name = next((t.name for t in project.trackers if t.id == tracker_id), None) if tracker_id else None
            default = project.trackers[0].name if project.trackers else "?"
            results.append(
                CheckResult.of(
                    N_("create:tracker"),
                    True,
                    N_("new issues get the tracker {tracker}") if name
                    else N_("new issues get {tracker}, the project's first tracker"),
                    tracker=name or default,
                )
            )
        except RejectedByHelpdesk as e:
            results.append(CheckResult.of(N_("create:tracker"), False, Text.plain(e)))
        try:
            results.append(self._check_roles_may_add_issues(project.identifier or self.create_project, project.name))
        except ConnectorError as e:
            results.append(CheckResult.of(
                N_("create:add_issues"), False, N_("could not read the roles: {error}"), error=e
            ))
        return results

    def _check_roles_may_add_issues(self, ident: str, name: str) -> CheckResult:
        members = MembershipList.model_validate(
            self.client.get(f"/projects/{ident}/memberships.json", {"limit": 100})
        ).memberships
        role_names: dict[int, str] = {r.id: r.name for m in members for r in m.roles}
        allowed = sorted(
            role_names[rid]
            for rid in role_names
            if "add_issues" in RoleEnvelope.model_validate(self.client.get(f"/roles/{rid}.json")).role.permissions
        )
        if not allowed:
            return CheckResult.of(
                N_("create:add_issues"),
                False,
                N_("no role of {project}'s members has 'Add issues': nobody's issue can be opened there. Grant it "
                   "in Administration > Roles and permissions"),
                project=name,
            )
        return CheckResult.of(
            N_("create:add_issues"),
            True,
            N_("members with role(s) {roles} may add issues in {project}; others are refused (the person is told)"),
            roles=", ".join(allowed), project=name,
        )


def _parse_ts(value: str) -> datetime:
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise ConnectorError(f"bad Redmine polling watermark {value!r}") from e
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
