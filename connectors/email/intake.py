"""The "ticket" when no helpdesk API is configured: a mail to the helpdesk's intake address.

The helpdesk's own mail gateway (GLPI's receivers, Redmine's ``receive_imap``) turns it into a
ticket. The mail is written so that the ticket belongs to the person as far as the gateway allows:

- ``From`` is our address (we may not send as the person); ``Reply-To`` is the person, so an
  agent's reply reaches them. GLPI makes the Reply-To the requester when the receiver has "Use
  Reply-To as requester (when available)" on (MailCollector ``requester_field``); Redmine's mail
  handler takes the author from ``From`` only (mail_handler.rb ``sender_email = email.from``), so
  there the author is our address's account.
- No ``Auto-Submitted``: Redmine's handler ignores mail with ``Auto-Submitted: auto-*`` or
  ``X-Auto-Response-Suppress: oof`` (``ignored_emails_headers``), and this one must become a ticket;
  ``X-Auto-Response-Suppress: All`` only asks the intake mailbox not to send us out-of-office answers.
- ``Message-ID`` is derived from the marker (``<ha-xxxxxxxxxxxx.ticket@domain>``), so every attempt
  of one hand-off sends the same id. A mail cannot be read back: when the worker retries after a
  crash between the SMTP answer and its own record, the intake gets the same message twice. Neither
  collector drops it by itself (GLPI's ``MailCollector::collect`` keeps Message-IDs only for
  refused mail; Redmine's handler has no such check), but the shared id and the ``ref ha-...`` line
  make the duplicate plain to an agent or to a duplicate filter on the intake mailbox (Sieve
  ``duplicate``, procmail ``formail -D``).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formataddr, formatdate, parseaddr

from connectors.base import (
    N_,
    Checkable,
    CheckResult,
    Connector,
    NewTicket,
    Person,
    RejectedByHelpdesk,
    Text,
    Ticket,
    TicketCreator,
    clean_lookup,
)
from connectors.email.compose import Language, Translate, as_is
from connectors.email.smtp import SmtpSender

log = logging.getLogger(__name__)

_ADDRESS_RE = re.compile(r"[^@\s<>()\[\],;:\"\\]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\.[A-Za-z]{2,}")
_LINEBREAKS = re.compile(r"[\r\n\t]+")
#: Characters that delimit addresses: a display name keeps none of them, so that a name such as
#: ``x\r\nBcc: a@b`` or ``"a@b" <c@d>`` cannot add or replace an address once the header is parsed.
_ADDRESS_SPECIALS = re.compile(r"[<>@,;:\"\\()\[\]]+")



def _header_text(value: str) -> str:
    return _LINEBREAKS.sub(" ", value or "").strip()


def _display_name(value: str) -> str:
    return " ".join(_ADDRESS_SPECIALS.sub(" ", _header_text(value)).split())


def plain_address(value: str) -> str | None:
    """``value`` when it is one plain e-mail address (no display name, no list), else None."""
    name, addr = parseaddr(value)
    if name or addr != value or not _ADDRESS_RE.fullmatch(addr):
        return None
    return addr


def intake_message_id(marker: str, domain: str) -> str:
    """The Message-ID of the mail for one hand-off: the same for every attempt."""
    domain = domain.strip().strip("<>").lstrip("@")
    if not domain or any(c in domain for c in "<>@ \t"):
        raise ValueError("message id domain must be a bare domain, e.g. support.example.com")
    return f"<{marker}.ticket@{domain}>"


def build_intake_ticket(
    new: NewTicket,
    *,
    to_addr: str,
    from_addr: str,
    from_name: str = "",
    message_id_domain: str = "",
    language: Language = "ru",
    words: Translate | None = None,
) -> EmailMessage:
    """The mail that opens ``new`` at the intake address (plain text; see the module notes; ``words``:
    the catalog's translator for ``language``)."""
    email = new.requester.email
    if not email or plain_address(email) is None:
        raise RejectedByHelpdesk("the requester has no usable e-mail address to put in Reply-To")
    _ = words or as_is
    person = _display_name(new.requester.name)
    msg = EmailMessage()
    msg["From"] = formataddr((_display_name(from_name), from_addr))
    msg["To"] = to_addr
    msg["Reply-To"] = formataddr((person, email))
    msg["Subject"] = _header_text(new.subject)
    msg["Date"] = formatdate(localtime=True)
    domain = message_id_domain or (from_addr.rsplit("@", 1)[-1] if "@" in from_addr else "")
    msg["Message-ID"] = intake_message_id(new.marker, domain)
    msg["X-Auto-Response-Suppress"] = "All"  # no out-of-office answers from the intake mailbox to us

    who = f"{person} <{email}>" if person else email
    intro = _("Request opened by the IT support assistant (helpdesk-assist) on behalf of: {who}.").format(who=who)
    lines = [intro, _("Replying to this message answers the user."), "", new.body.strip(), ""]
    if new.category.strip():
        lines += [_("Category (the assistant's guess)") + f": {new.category.strip()}", ""]
    lines.append(f"ref {new.marker}")
    msg.set_content("\n".join(lines) + "\n")
    msg["Content-Language"] = language
    return msg


class IntakeTicketCreator(Connector, TicketCreator, Checkable):
    """:class:`~connectors.base.TicketCreator` over SMTP to the helpdesk's intake address."""

    name = "email"

    def __init__(
        self,
        sender: SmtpSender,
        *,
        intake_address: str,
        from_addr: str,
        from_name: str = "",
        message_id_domain: str = "",
        language: Language = "ru",
        words: Translate | None = None,
    ) -> None:
        self.sender = sender
        self.intake_address = intake_address
        self.from_addr = from_addr
        self.from_name = from_name
        self.message_id_domain = message_id_domain
        self.language: Language = language
        self.words = words

    def find_requester(self, login_or_email: str) -> Person | None:
        """A person known by a plain e-mail address (nothing to check it against: there is no
        helpdesk API); None for a login, which only a helpdesk could resolve."""
        addr = plain_address(clean_lookup(login_or_email))
        return Person(id=f"email:{addr.lower()}", email=addr) if addr else None

    def find_created(self, new: NewTicket) -> Ticket | None:
        """Always None: a sent mail cannot be read back (see the module notes on duplicates)."""
        return None

    def create_ticket(self, new: NewTicket) -> Ticket:
        msg = build_intake_ticket(
            new,
            to_addr=self.intake_address,
            from_addr=self.from_addr,
            from_name=self.from_name,
            message_id_domain=self.message_id_domain,
            language=self.language,
            words=self.words,
        )
        self.sender.send(msg, to=[self.intake_address])
        message_id = str(msg["Message-ID"]).strip("<>")
        log.info("email.intake_ticket_sent marker=%s", new.marker)
        return Ticket(
            source=self.name,
            id=message_id,
            subject=new.subject,
            body=new.body,
            state="new",
            status_name="sent to the intake address",
            requester=new.requester,
            author=new.requester,
            created_at=datetime.now(UTC),
        )

    def check(self) -> list[CheckResult]:
        """The SMTP server takes mail from our address to the intake address (nothing is sent): the same
        envelope test as the mailbox's own check, under this creator's name."""
        results = self.sender.check(self.from_addr, [("email.forward_to", self.intake_address)])
        failed = [r for r in results if not r.ok]
        if failed:
            cause = failed[0].detail_text or Text.plain(failed[0].detail)
            return [CheckResult.of(N_("intake address"), False, N_(
                "The mail server does not take mail from {sender} to {intake} "
                "({cause}): check the SMTP settings and the helpdesk's intake address."),
                sender=self.from_addr, intake=self.intake_address, cause=cause)]
        return [CheckResult.of(N_("intake address"), True, N_(
            "The mail server takes mail from {sender} to {intake}: tickets are opened by mail."),
            sender=self.from_addr, intake=self.intake_address)]
