"""An in-memory helpdesk for pipeline logic tests (the real ones are tested against a real Redmine
and the fake GLPI server). It renders nothing: it keeps the OutgoingMessage objects it was given,
so tests can assert exactly what would have been posted, publicly or privately."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime

from connectors.base import (
    Comment,
    Connector,
    HelpdeskOutcome,
    NotFound,
    OutgoingMessage,
    Person,
    Ticket,
    TicketReader,
    TicketWriter,
    TransientConnectorError,
)

REQUESTER = Person(id="7", name="Rita Requester", email="rita@example.test", login="rita")
AGENT = Person(id="2", name="Alex Agent", login="alex")
BOT = Person(id="99", name="helpdesk-assist", login="bot")


@dataclass
class Posted:
    ticket_id: str
    message: OutgoingMessage
    private: bool

    def text(self) -> str:
        m = self.message
        parts = [m.heading, *m.paragraphs, *(f"{e.title} {e.text}" for e in m.entries),
                 *(f"{lnk.label} {lnk.url}" for lnk in m.links), *(f"{k}: {v}" for k, v in m.facts), m.footer, m.marker]
        return "\n".join(parts)


@dataclass
class FakeHelpdesk(Connector, TicketReader, TicketWriter):
    name: str = "fake"
    tickets: dict[str, Ticket] = field(default_factory=dict)
    posted: list[Posted] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    handed_back: list[str] = field(default_factory=list)
    #: Raise this many transient errors on get_ticket first.
    fail_reads: int = 0
    #: Post the next comment, then raise (a crash between posting and recording).
    crash_after_next_post: bool = False
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1000))

    def add_ticket(self, subject: str, body: str, *, author: Person = REQUESTER, **kw: object) -> Ticket:
        tid = str(next(self._ids))
        now = datetime.now(UTC)
        t = Ticket(source=self.name, id=tid, subject=subject, body=body, state=kw.pop("state", "new"),  # type: ignore[arg-type]
                   requester=kw.pop("requester", REQUESTER), author=author, created_at=now, updated_at=now, **kw)  # type: ignore[arg-type]
        self.tickets[tid] = t
        return t

    def get_ticket(self, ticket_id: str) -> Ticket:
        if self.fail_reads > 0:
            self.fail_reads -= 1
            raise TransientConnectorError("helpdesk unreachable (simulated)")
        if ticket_id not in self.tickets:
            raise NotFound(f"ticket {ticket_id} not found")
        return self.tickets[ticket_id].model_copy(deep=True)

    def _append(self, ticket_id: str, message: OutgoingMessage, private: bool, author: Person = BOT) -> Comment:
        t = self.tickets[ticket_id]
        c = Comment(id=str(next(self._ids)), author=author, body="\n".join(message.paragraphs), is_private=private,
                    created_at=datetime.now(UTC), marker=message.marker)
        t.comments.append(c)
        self.posted.append(Posted(ticket_id, message, private))
        return c

    def post_comment(self, ticket_id: str, message: OutgoingMessage, *, private: bool) -> Comment:
        c = self._append(ticket_id, message, private)
        if self.crash_after_next_post:
            self.crash_after_next_post = False
            raise RuntimeError("worker crashed after posting (simulated)")
        return c

    def close_confirmed(self, ticket_id: str, message: OutgoingMessage) -> Ticket:
        t = self.tickets[ticket_id]
        if t.state != "closed":
            self._append(ticket_id, message, private=False)
            t.state = "closed"
            self.closed.append(ticket_id)
        return t

    def hand_back(self, ticket_id: str, message: OutgoingMessage) -> Ticket:
        self._append(ticket_id, message, private=True)
        self.handed_back.append(ticket_id)
        return self.tickets[ticket_id]

    # -- what people do inside the helpdesk ----------------------------------------------------------
    def requester_closes(self, ticket_id: str) -> None:
        t = self.tickets[ticket_id]
        t.state = "closed"
        t.outcomes.append(HelpdeskOutcome(kind="solved", by_requester=True, at=datetime.now(UTC),
                                          detail="closed by the requester"))

    def agent_replies(self, ticket_id: str, text: str) -> None:
        self._append(ticket_id, OutgoingMessage(marker="", paragraphs=[text]), private=False, author=AGENT)
        self.tickets[ticket_id].comments[-1].marker = None
