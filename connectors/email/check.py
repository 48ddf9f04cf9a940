"""``helpdesk-assist check`` for the support mailbox: IMAP, SMTP and the helpdesk's intake address.

:class:`MailboxCheck` is the mailbox's :class:`connectors.base.Checkable`: IMAP (reach, TLS as
configured, login, the folder we read, the processed folder found or created), SMTP (reach, TLS,
AUTH, then an envelope ``MAIL FROM`` our address / ``RCPT TO`` the forward address / ``RSET``: no
message is sent). Each result says in plain words what to fix, naming the ``email.*`` setting;
passwords are never shown.
"""

from __future__ import annotations

from connectors.base import Checkable, CheckResult
from connectors.email.imap import Mailbox
from connectors.email.smtp import SmtpSender


class MailboxCheck(Checkable):
    def __init__(self, mailbox: Mailbox, sender: SmtpSender, *, address: str, forward_to: str) -> None:
        self.mailbox = mailbox
        self.sender = sender
        self.address = address
        self.forward_to = forward_to

    def check(self) -> list[CheckResult]:
        recipients = [("email.forward_to", self.forward_to)] if self.forward_to else []
        return [*self.mailbox.check(), *self.sender.check(self.address, recipients)]
