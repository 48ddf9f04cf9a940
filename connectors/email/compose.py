"""Messages we send: the suggestion reply to a user, the short thanks after "solved", and the
forward of a user's original message to the helpdesk's intake address.

Every reply to a user is threaded (our Message-ID, In-Reply-To, References, subject tag), marked as
automatic (``Auto-Submitted``, ``X-Auto-Response-Suppress: All``) and starts with our "reply above
this line" marker. Replies are multipart/alternative: plain text and HTML, every user or
knowledge-base text HTML-escaped in the HTML part.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from email.generator import BytesGenerator
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, formatdate
from io import BytesIO
from typing import Any, Literal

from connectors.email.parse import REPLY_MARKER, IncomingMail
from connectors.email.threads import add_subject_tag, new_message_id, reply_subject

Language = Literal["ru", "en"]

#: Keep References short: the first id (the thread root) and the newest ones.
MAX_REFERENCES = 20
#: Longest user text quoted into a forward note.
MAX_NOTE_TEXT = 20_000

#: A translator for the message's language (English key -> text), given by the application's message
#: catalog; without one the English keys are used.
Translate = Callable[[str], str]


def as_is(key: str) -> str:
    return key


class RawBytesGenerator(BytesGenerator):
    """BytesGenerator that writes a string payload of a message/rfc822 part back to its original
    bytes (surrogate escapes included): the stdlib one only allows ASCII there."""

    def _encode(self, s: str) -> bytes:
        return s.encode("ascii", errors="surrogateescape")


def flatten(msg: EmailMessage, linesep: str = "\r\n") -> bytes:
    """The message as bytes (CRLF line ends by default), original attachments byte for byte."""
    buf = BytesIO()
    RawBytesGenerator(buf, policy=msg.policy.clone(linesep=linesep)).flatten(msg)
    return buf.getvalue()


class ForwardMessage(EmailMessage):
    """An EmailMessage whose ``as_bytes()``/``bytes()`` keep an attached original unchanged."""

    def as_bytes(self, unixfrom: bool = False, policy: Any = None) -> bytes:
        buf = BytesIO()
        RawBytesGenerator(buf, mangle_from_=False, policy=policy or self.policy).flatten(self, unixfrom=unixfrom)
        return buf.getvalue()

    def __bytes__(self) -> bytes:
        return self.as_bytes()


_LINEBREAKS = re.compile(r"[\r\n\t]+")


def _header_text(value: str) -> str:
    """A header value without line breaks (no header injection from user text)."""
    return _LINEBREAKS.sub(" ", value or "").strip()


def _sender_of(original: IncomingMail) -> tuple[str, str]:
    """(name, address) to answer: the Reply-To when the user set one, else From."""
    if original.reply_to:
        return "", original.reply_to[0]
    return original.from_name, original.from_addr


def reply_address(original: IncomingMail) -> str:
    """The address a reply to ``original`` is written to (its Reply-To, else its From)."""
    return _sender_of(original)[1]


def _references(original: IncomingMail) -> list[str]:
    refs = list(original.references)
    if not original.message_id_generated and original.message_id not in refs:
        refs.append(original.message_id)
    if len(refs) > MAX_REFERENCES:
        refs = refs[:1] + refs[-(MAX_REFERENCES - 1) :]
    return refs


def _threaded(
    original: IncomingMail,
    *,
    from_addr: str,
    from_name: str,
    message_id_domain: str,
    conversation_id: str,
    language: Language,
    words: Translate | None = None,
) -> EmailMessage:
    msg = EmailMessage()
    name, addr = _sender_of(original)
    if not addr:
        raise ValueError("the original message has no sender address to answer")
    msg["From"] = formataddr((_header_text(from_name), from_addr))
    msg["To"] = formataddr((_header_text(name), addr))
    subject = _header_text(original.subject) or (words or as_is)("(no subject)")
    msg["Subject"] = add_subject_tag(reply_subject(subject), conversation_id)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = new_message_id(message_id_domain, conversation_id)
    if not original.message_id_generated:
        msg["In-Reply-To"] = f"<{original.message_id}>"
    refs = _references(original)
    if refs:
        msg["References"] = " ".join(f"<{r}>" for r in refs)
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"
    return msg


def _paragraphs_html(text: str) -> str:
    parts = [p.strip() for p in re.split(r"\n\s*\n", text or "") if p.strip()]
    return "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in parts)


_BUTTON = (
    "display:inline-block;padding:8px 16px;margin:4px 8px 4px 0;border-radius:4px;"
    "text-decoration:none;color:#ffffff;background:{color};font-weight:bold"
)


def build_reply(
    original: IncomingMail,
    *,
    from_addr: str,
    from_name: str,
    message_id_domain: str,
    conversation_id: str,
    language: Language,
    answer_text: str,
    entries: Sequence[tuple[str, str]],
    solved_url: str,
    not_solved_url: str,
    words: Translate | None = None,
) -> EmailMessage:
    """The suggestion to the user: answer, knowledge-base entries and the two signed links (``words``:
    the catalog's translator for ``language``)."""
    _ = words or as_is
    msg = _threaded(
        original,
        from_addr=from_addr,
        from_name=from_name,
        message_id_domain=message_id_domain,
        conversation_id=conversation_id,
        language=language,
        words=words,
    )
    subject = _header_text(original.subject) or _("(no subject)")
    intro = _("This is an automatic answer from the IT support assistant to your message “{subject}”.")
    intro = intro.format(subject=subject)
    hello, maybe, question = _("Hello,"), _("This may help:"), _("Did this solve your problem?")
    solved, not_solved = _("Yes, it is solved"), _("No, it did not help")
    keywords = _("You can also reply to this message with one word: “Yes” or “No”.")
    timeout = _("If you do not answer, your message will be passed on to the support team.")

    lines = [REPLY_MARKER[language], "", hello, "", intro, ""]
    if answer_text.strip():
        lines += [answer_text.strip(), ""]
    if entries:
        lines += [maybe, ""]
        for n, (title, text) in enumerate(entries, 1):
            lines += [f"{n}. {title.strip()}", text.strip(), ""]
    lines += [question, f"  {solved}: {solved_url}", f"  {not_solved}: {not_solved_url}", "", keywords, timeout]
    msg.set_content("\n".join(lines) + "\n")

    e = html.escape
    parts = [
        f'<p style="color:#888888;font-size:12px">{e(REPLY_MARKER[language])}</p>',
        f"<p>{e(hello)}</p>",
        f"<p>{e(intro)}</p>",
        _paragraphs_html(answer_text),
    ]
    if entries:
        parts.append(f"<p>{e(maybe)}</p><ol>")
        for title, text in entries:
            parts.append(f"<li><p><b>{e(title.strip())}</b></p>{_paragraphs_html(text)}</li>")
        parts.append("</ol>")
    parts += [
        f"<p><b>{e(question)}</b></p>",
        "<p>"
        f'<a href="{e(solved_url, quote=True)}" style="{_BUTTON.format(color="#2e7d32")}">{e(solved)}</a>'
        f'<a href="{e(not_solved_url, quote=True)}" style="{_BUTTON.format(color="#c62828")}">{e(not_solved)}</a>'
        "</p>",
        f'<p style="color:#555555">{e(keywords)}<br>{e(timeout)}</p>',
    ]
    body = "".join(parts)
    msg.add_alternative(
        f'<!DOCTYPE html><html lang="{language}"><head><meta charset="utf-8"></head><body>{body}</body></html>\n',
        subtype="html",
    )
    msg["Content-Language"] = language  # after the body: make_alternative moves Content-* headers down
    return msg


def build_thanks(
    original: IncomingMail,
    *,
    from_addr: str,
    from_name: str,
    message_id_domain: str,
    conversation_id: str,
    language: Language,
    words: Translate | None = None,
) -> EmailMessage:
    """The short confirmation after the user said "solved" (plain text only)."""
    _ = words or as_is
    msg = _threaded(
        original,
        from_addr=from_addr,
        from_name=from_name,
        message_id_domain=message_id_domain,
        conversation_id=conversation_id,
        language=language,
        words=words,
    )
    lines = [
        _("Hello,"),
        "",
        _("Thank you for letting us know! We are glad the problem is solved."),
        _("Your request is closed and no ticket was created. If the problem comes back, just write to us again."),
    ]
    msg.set_content("\n".join(lines) + "\n")
    msg["Content-Language"] = language
    return msg


# --------------------------------------------------------------------------------------------------
# Forward to the helpdesk
# --------------------------------------------------------------------------------------------------


def _fits_rfc822_unchanged(raw: bytes) -> bool:
    """Whether ``raw`` can travel as a message/rfc822 part with 7bit/8bit encoding unchanged:
    no NUL bytes, no line over 998 octets (RFC 5322 2.1.1; postfix would fold it)."""
    if b"\x00" in raw:
        return False
    return all(len(line) <= 998 for line in raw.split(b"\n"))


def _rfc822_part(raw: bytes) -> EmailMessage:
    part = EmailMessage()
    part["Content-Type"] = "message/rfc822"
    part["Content-Disposition"] = 'attachment; filename="original.eml"'
    part["Content-Transfer-Encoding"] = "7bit" if raw.isascii() else "8bit"
    # A string payload on a message/rfc822 part is written as it is by the generator (BytesGenerator
    # turns the surrogate escapes back into the original bytes): never re-serialized.
    part.set_payload(raw.decode("ascii", errors="surrogateescape"))
    return part


def _section(title: str, text: str) -> list[str]:
    text = (text or "").strip()
    if not text:
        return []
    if len(text) > MAX_NOTE_TEXT:
        text = text[:MAX_NOTE_TEXT] + " [...]"
    return [f"{title}:", text, ""]


def build_forward(
    original_raw: bytes,
    original: IncomingMail | None,
    *,
    to_addr: str,
    from_addr: str,
    note_text: str,
    suggestion_text: str = "",
    user_reason: str = "",
    from_name: str = "",
    language: Language = "ru",
    auto_submitted: bool = True,
    conversation_id: str | None = None,
    message_id_domain: str = "",
    words: Translate | None = None,
) -> EmailMessage:
    """The user's message for the helpdesk's intake: our note in the body, the original attached
    unchanged as message/rfc822, ``Reply-To`` the user so that the helpdesk answers them.

    ``note_text``: why it is forwarded ("no answer within 48 h"); ``suggestion_text``: what we
    suggested; ``user_reason``: what the user answered. ``auto_submitted=False`` leaves out
    ``Auto-Submitted: auto-generated``: Redmine's mail handler ignores mail carrying it.
    """
    _ = words or as_is
    msg: EmailMessage = ForwardMessage()
    msg["From"] = formataddr((_header_text(from_name), from_addr))
    msg["To"] = to_addr
    subject = _header_text(original.subject) if original else ""
    no_subject = _("(no subject)")
    msg["Subject"] = f"Fwd: {subject or no_subject}"
    msg["Date"] = formatdate(localtime=True)
    domain = message_id_domain or (from_addr.rsplit("@", 1)[-1] if "@" in from_addr else "localhost")
    msg["Message-ID"] = new_message_id(domain, conversation_id or "fwd")
    if original is not None:
        name, addr = _sender_of(original)
        if addr:
            msg["Reply-To"] = formataddr((_header_text(name), addr))
    if auto_submitted:
        msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"

    lines = [_("A user's message forwarded by the IT support assistant (helpdesk-assist)."), ""]
    lines += _section(_("Why it is forwarded"), note_text)
    if original is not None:
        sender = f"{original.from_name} <{original.from_addr}>".strip() if original.from_addr else ""
        lines += [_("From") + f": {sender}", _("Subject") + f": {subject or no_subject}"]
        if original.date is not None:
            lines.append(_("Received") + f": {format_datetime(original.date)}")
        lines.append("")
        lines += _section(_("Message text"), original.text)
    else:
        lines += [_("(the message could not be parsed)"), ""]
    lines += _section(_("What the assistant suggested"), suggestion_text)
    lines += _section(_("What the user answered"), user_reason)
    if original is not None and original.problems:
        lines += [_("Problems reading the message") + ":", *[f"- {p}" for p in original.problems], ""]
    unchanged = _fits_rfc822_unchanged(original_raw)
    lines.append(
        _("The original message is attached unchanged (original.eml). Replying to this message answers the user.")
        if unchanged
        else _("The original message is attached unchanged as the file original.eml: it cannot be attached as a "
               "message (message/rfc822) unchanged (very long lines or NUL bytes).")
    )
    msg.set_content("\n".join(lines) + "\n")

    if unchanged:
        msg.make_mixed()
        msg.attach(_rfc822_part(original_raw))
    else:
        msg.add_attachment(original_raw, maintype="application", subtype="octet-stream", filename="original.eml")
    return msg
