"""The support mailbox: building blocks for answering e-mail first and forwarding the rest.

- :mod:`.parse`    - raw bytes -> :class:`IncomingMail` (decoded, reply history stripped; never raises)
- :mod:`.loops`    - :func:`automatic_reason`: messages never to answer automatically
- :mod:`.threads`  - our Message-IDs, conversation lookup from In-Reply-To/References, subject tags
- :mod:`.keywords` - :func:`classify_reply`: "Да, помогло" / "No, still broken" / None
- :mod:`.compose`  - the reply with two signed links, the thanks, the forward to the helpdesk
- :mod:`.imap`     - :class:`Mailbox` (fetch by UID, move processed, IDLE wait)
- :mod:`.smtp`     - :class:`SmtpSender`
- :mod:`.check`    - :class:`MailboxCheck`: ``helpdesk-assist check`` for IMAP, SMTP and ``forward_to``
- :mod:`.intake`   - :class:`IntakeTicketCreator`: a ticket as a mail to the helpdesk's intake address

Pure stdlib ``email`` + imapclient; nothing here imports Flask or ``plugin``.
"""

from connectors.email.check import MailboxCheck
from connectors.email.compose import build_forward, build_reply, build_thanks, reply_address
from connectors.email.imap import Mailbox
from connectors.email.intake import IntakeTicketCreator, build_intake_ticket
from connectors.email.keywords import classify_reply
from connectors.email.loops import automatic_reason
from connectors.email.parse import Attachment, IncomingMail, parse_message
from connectors.email.smtp import SmtpSender
from connectors.email.threads import (
    add_subject_tag,
    conversation_from_headers,
    find_subject_tag,
    new_message_id,
)

__all__ = [
    "Attachment",
    "IncomingMail",
    "IntakeTicketCreator",
    "Mailbox",
    "MailboxCheck",
    "SmtpSender",
    "add_subject_tag",
    "automatic_reason",
    "build_forward",
    "build_intake_ticket",
    "build_reply",
    "build_thanks",
    "classify_reply",
    "conversation_from_headers",
    "find_subject_tag",
    "new_message_id",
    "parse_message",
    "reply_address",
]
