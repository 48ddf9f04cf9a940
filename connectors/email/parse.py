"""Parse a raw message into :class:`IncomingMail`: headers decoded, the new text of the reply cut from
its quoted history, attachments listed (never processed).

Never raises on bad input: a message that cannot be fully decoded is returned with what could be
read, and each thing that went wrong is a line in ``problems`` (the pipeline then forwards the
original bytes as they are, with a note).

The stdlib parser runs with the ``compat32`` policy: it keeps raw header values (so that 8-bit
headers and unknown charsets can be decoded here with a fallback) and never raises on malformed
structure. Reply stripping is our own small line-based stripper (see :func:`strip_reply`):
``mail-parser-reply`` was evaluated on the fixtures and missed the Russian Outlook header block, the
Gmail Russian attribution line and our own marker (the report to the lead has the comparison).
"""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import datetime
from email import message_from_bytes
from email.header import decode_header
from email.message import Message
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

#: Our "reply above this line" marker, put at the top of every message we send (compose.py), found
#: here (quoted or not) to cut what follows.
REPLY_MARKER = {
    "ru": "##- Пожалуйста, ответьте выше этой строки -##",
    "en": "##- Please type your reply above this line -##",
}
_MARKER_RE = re.compile(r"^[>\s]*##-.*-##\s*$")
#: Control characters dropped from decoded text (tab, newline and carriage return kept).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

#: Headers kept on :class:`IncomingMail` for loop detection and threading (lowercase names).
KEPT_HEADERS = (
    "auto-submitted",
    "precedence",
    "x-autoreply",
    "x-autorespond",
    "x-auto-response-suppress",
    "return-path",
    "sender",
    "x-loop",
    "x-failed-recipients",
    "x-ms-exchange-generated-message-source",
)

_CYRILLIC_FALLBACKS = ("utf-8", "windows-1251", "koi8-r", "iso-8859-5")
_LATIN1_FAMILY = {"iso-8859-1", "latin-1", "latin1", "windows-1252", "cp1252", "us-ascii", "ascii"}


class Attachment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: str = ""
    content_type: str
    size: int = 0
    inline: bool = False


class IncomingMail(BaseModel):
    """A received message, decoded. Message ids are kept without angle brackets."""

    model_config = ConfigDict(extra="forbid")

    message_id: str
    #: True when the message had no usable Message-ID and ``message_id`` is our stable hash of
    #: From + Date + Subject (the same message fetched twice gets the same id).
    message_id_generated: bool = False
    in_reply_to: str | None = None
    references: list[str] = Field(default_factory=list)
    from_addr: str = ""
    from_name: str = ""
    to: list[str] = Field(default_factory=list)
    cc: list[str] = Field(default_factory=list)
    reply_to: list[str] = Field(default_factory=list)
    subject: str = ""
    date: datetime | None = None
    #: The new text of this message: plain text preferred (HTML converted when there is none),
    #: quoted history, our marker and what follows it, and the signature removed. When nothing is
    #: left (a message that is all quote), the full text.
    text: str = ""
    #: All the text of the message, quotes included.
    full_text: str = ""
    #: True when the text came from an HTML part (no text/plain part).
    from_html: bool = False
    #: Top-level content type, e.g. "multipart/report" for a bounce.
    content_type: str = "text/plain"
    attachments: list[Attachment] = Field(default_factory=list)
    #: "ru" or "en" by the letters of ``text`` (None without letters).
    language: Literal["ru", "en"] | None = None
    #: Loop-relevant headers (lowercase name -> decoded value), and every List-* header present.
    headers: dict[str, str] = Field(default_factory=dict)
    #: What could not be decoded cleanly, in plain words ("part 2: unknown charset x-foo, ...").
    problems: list[str] = Field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# Charsets
# --------------------------------------------------------------------------------------------------

_FREQUENT_RU = set("оеаинтсрвлкмдпуяыьгзбчйхжшюцщэфъё")


def _cyrillic_score(text: str) -> float:
    """Higher for text that reads as Russian: lowercase Cyrillic letters, few odd symbols."""
    score = 0.0
    for ch in text:
        if ch in _FREQUENT_RU:
            score += 2.0
        elif "А" <= ch <= "Я" or ch == "Ё":
            score += 0.5
        elif ch.isascii():
            continue
        else:
            score -= 3.0  # box drawing, Serbian/Ukrainian letters, symbols: a wrong guess
    return score


def guess_decode(data: bytes) -> tuple[str, str]:
    """Decode bytes of unknown charset: strict UTF-8 first, then the Cyrillic single-byte charsets
    ranked by how Russian the result reads. Returns ``(text, charset)``; never raises."""
    if not data:
        return "", "ascii"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    best: tuple[float, str, str] | None = None
    for cs in _CYRILLIC_FALLBACKS[1:]:
        try:
            text = data.decode(cs)
        except UnicodeDecodeError:
            continue
        score = _cyrillic_score(text)
        if best is None or score > best[0]:
            best = (score, text, cs)
    if best is not None and best[0] > 0:
        return best[1], best[2]
    return data.decode("utf-8", errors="replace"), "utf-8 with replacement"


def _looks_like_mojibake(text: str) -> bool:
    """Latin-1 decoding of Cyrillic single-byte text: mostly letters from the À-ÿ range."""
    high = sum(1 for ch in text if "\u00c0" <= ch <= "\u00ff")
    letters = sum(1 for ch in text if ch.isalpha())
    return letters > 0 and high >= 0.4 * letters


def decode_bytes(data: bytes, charset: str | None, where: str, problems: list[str]) -> str:
    """Decode with the declared charset; on an unknown or wrong one fall back (noted in problems)."""
    cs = (charset or "").strip().strip('"').lower()
    if not cs:
        if data.isascii():
            return data.decode("ascii")
        text, used = guess_decode(data)
        problems.append(f"{where}: 8-bit text without a charset, decoded as {used}")
        return text
    try:
        text = data.decode(cs)
    except LookupError:
        text, used = guess_decode(data)
        problems.append(f"{where}: unknown charset {cs}, decoded as {used}")
        return text
    except UnicodeDecodeError:
        text, used = guess_decode(data)
        problems.append(f"{where}: not valid {cs}, decoded as {used}")
        return text
    if cs in _LATIN1_FAMILY and not data.isascii() and _looks_like_mojibake(text):
        guessed, used = guess_decode(data)
        if used in _CYRILLIC_FALLBACKS[1:] and _cyrillic_score(guessed) > 0:
            problems.append(f"{where}: declared {cs} but reads as {used}, decoded as {used}")
            return guessed
    return text


# --------------------------------------------------------------------------------------------------
# Headers
# --------------------------------------------------------------------------------------------------


def _raw_header(msg: Message, name: str) -> str | None:
    for key, value in msg.raw_items():
        if key.lower() == name:
            return str(value)
    return None


def _has_escaped_bytes(value: str) -> bool:
    # compat32 keeps undecodable 8-bit header bytes as surrogate escapes (U+DC80..U+DCFF)
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def decode_header_value(value: str | None, where: str, problems: list[str]) -> str:
    """RFC 2047 encoded words and raw 8-bit bytes to text; unknown charsets fall back with a note."""
    if not value:
        return ""
    if _has_escaped_bytes(value):
        raw = value.encode("utf-8", errors="surrogateescape")
        text, used = guess_decode(raw)
        problems.append(f"{where}: raw 8-bit header, decoded as {used}")
        value = text
    try:
        chunks = decode_header(value)
    except Exception as e:  # noqa: BLE001 - malformed encoded word (bad base64): keep the text as it is
        problems.append(f"{where}: malformed encoded word ({type(e).__name__}), kept as is")
        return _unfold(value)
    out: list[str] = []
    for chunk, cs in chunks:
        if isinstance(chunk, str):
            out.append(chunk)
        else:
            out.append(decode_bytes(chunk, cs or "ascii", where, problems))
    return _unfold("".join(out))


def _unfold(text: str) -> str:
    return _CONTROL.sub("", re.sub(r"\s*\r?\n\s*", " ", text)).strip()


_ID_RE = re.compile(r"<([^<>\s]+)>")


def parse_ids(value: str | None) -> list[str]:
    """Message ids in a Message-ID/In-Reply-To/References value, without angle brackets, in order."""
    if not value:
        return []
    ids = _ID_RE.findall(value)
    if not ids:  # some clients omit the brackets
        ids = [w for w in value.split() if "@" in w]
    seen: list[str] = []
    for i in ids:
        if i not in seen:
            seen.append(i)
    return seen


def _addresses(msg: Message, name: str, problems: list[str]) -> list[tuple[str, str]]:
    """(decoded display name, lowercased address) pairs of an address header."""
    values = [str(v) for k, v in msg.raw_items() if k.lower() == name]
    if not values:
        return []
    result: list[tuple[str, str]] = []
    for display, addr in getaddresses(values):
        addr = addr.strip().lower()
        if not addr:
            continue
        result.append((decode_header_value(display, name.capitalize(), problems), addr))
    return result


def _generated_id(msg: Message) -> str:
    parts = [(_raw_header(msg, h) or "").strip() for h in ("from", "date", "subject")]
    digest = hashlib.sha256("\n".join(parts).encode("utf-8", errors="surrogateescape")).hexdigest()
    return f"generated.{digest[:32]}@helpdesk-assist.invalid"


def _parse_date(value: str | None, problems: list[str]) -> datetime | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        problems.append("Date: not a valid date, ignored")
        return None


# --------------------------------------------------------------------------------------------------
# Body
# --------------------------------------------------------------------------------------------------


class _Collected:
    def __init__(self) -> None:
        self.plain: list[str] = []
        self.html: list[str] = []
        self.attachments: list[Attachment] = []
        self.index = 0


def _is_attachment(part: Message) -> bool:
    disposition = (part.get("Content-Disposition") or "").split(";")[0].strip().lower()
    return disposition == "attachment" or (part.get_filename() is not None and disposition != "inline")


def _payload_bytes(part: Message, where: str, problems: list[str]) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception as e:  # noqa: BLE001 - compat32 is lenient, but never let one part stop the message
        problems.append(f"{where}: payload could not be decoded ({type(e).__name__})")
        return b""
    if part.defects:
        names = sorted({type(d).__name__ for d in part.defects})
        problems.append(f"{where}: {', '.join(names)}")
    return data if isinstance(data, bytes) else b""


def _attachment(part: Message, where: str, problems: list[str]) -> Attachment:
    filename = part.get_filename() or ""
    if filename:
        filename = decode_header_value(filename, f"{where} filename", problems)
    size = 0
    if part.is_multipart() or part.get_content_maintype() == "message":
        try:
            size = len(part.as_bytes())
        except Exception:  # noqa: BLE001 - a message/rfc822 part too broken to re-serialize
            size = 0
    else:
        try:
            payload = part.get_payload(decode=True)
            size = len(payload) if isinstance(payload, bytes) else 0
        except Exception:  # noqa: BLE001 - the size is informative only
            size = 0
    disposition = (part.get("Content-Disposition") or "").split(";")[0].strip().lower()
    return Attachment(
        filename=filename, content_type=part.get_content_type(), size=size, inline=disposition == "inline"
    )


def _walk(part: Message, out: _Collected, problems: list[str]) -> None:
    out.index += 1
    where = f"part {out.index}"
    ctype = part.get_content_type()
    if part.is_multipart() and part.get_content_maintype() == "multipart":
        payload = part.get_payload()
        for sub in payload if isinstance(payload, list) else []:
            if isinstance(sub, Message):
                _walk(sub, out, problems)
        return
    if part.get_content_maintype() != "text" or _is_attachment(part):
        out.attachments.append(_attachment(part, where, problems))
        return
    if ctype not in ("text/plain", "text/html"):
        out.attachments.append(_attachment(part, where, problems))
        return
    text = decode_bytes(_payload_bytes(part, where, problems), part.get_content_charset(), where, problems)
    text = _CONTROL.sub("", text)
    if ctype == "text/html":
        out.html.append(text)
        return
    if _param(part, "format") == "flowed":
        text = unflow(text, delsp=_param(part, "delsp") == "yes")
    out.plain.append(text)


def _param(part: Message, name: str) -> str:
    value = part.get_param(name)
    return value.lower() if isinstance(value, str) else ""


def unflow(text: str, *, delsp: bool = False) -> str:
    """RFC 3676 format=flowed: join soft line breaks (a line ending in a space), keep "-- "."""
    out: list[str] = []
    buf = ""
    for line in text.splitlines():
        if line == "-- ":
            if buf:
                out.append(buf)
                buf = ""
            out.append(line)
            continue
        if line.startswith(" "):  # space-stuffing
            line = line[1:]
        if line.endswith(" "):
            buf += line[:-1] if delsp else line
        else:
            out.append(buf + line)
            buf = ""
    if buf:
        out.append(buf)
    return "\n".join(out)


class _HtmlText(HTMLParser):
    _BLOCK: ClassVar[set[str]] = set("p div br tr li h1 h2 h3 h4 h5 h6 table ul ol pre hr".split())
    _SKIP: ClassVar[set[str]] = {"script", "style", "head", "title"}

    def __init__(self, *, drop_quotes: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.drop_quotes = drop_quotes
        self.parts: list[str] = []
        self.skip_depth = 0
        self.quote_stack: list[str] = []

    def _is_quote(self, tag: str, attrs: list[tuple[str, str | None]]) -> bool:
        if not self.drop_quotes:
            return False
        a = {k: (v or "") for k, v in attrs}
        classes = a.get("class", "").split()
        if tag == "blockquote":
            return True
        if "gmail_quote" in classes or "gmail_attr" in classes or "yahoo_quoted" in classes:
            return True
        return a.get("id", "") in ("divRplyFwdMsg", "appendonsend", "mail-editor-reference-message-container")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.quote_stack:
            if tag not in ("br", "hr", "img", "meta", "link", "input", "wbr"):
                self.quote_stack.append(tag)
            return
        if tag in self._SKIP:
            self.skip_depth += 1
            return
        if self._is_quote(tag, attrs):
            self.quote_stack.append(tag)
            return
        if tag in self._BLOCK:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("- ")

    def handle_endtag(self, tag: str) -> None:
        if self.quote_stack:
            if tag in self.quote_stack:
                while self.quote_stack and self.quote_stack.pop() != tag:
                    pass
            return
        if tag in self._SKIP:
            self.skip_depth = max(0, self.skip_depth - 1)
            return
        if tag in self._BLOCK and tag != "li":
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self.skip_depth or self.quote_stack:
            return
        self.parts.append(re.sub(r"[ \t\r\n\f]+", " ", data))

    def text(self) -> str:
        lines = [line.strip() for line in "".join(self.parts).replace("\xa0", " ").split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def html_to_text(html: str, *, drop_quotes: bool = False) -> str:
    """Readable text of an HTML body; with ``drop_quotes`` blockquotes and Gmail/Outlook quoted
    history are left out. Never raises."""
    parser = _HtmlText(drop_quotes=drop_quotes)
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # noqa: BLE001 - HTMLParser is lenient; this is a last resort
        return re.sub(r"<[^>]+>", " ", html)
    return parser.text()


# --------------------------------------------------------------------------------------------------
# Reply stripping
# --------------------------------------------------------------------------------------------------

_HEADER_FROM = re.compile(r"^\s*\*?(From|От|Von|De|Od)\s*:\*?\s", re.IGNORECASE)
_HEADER_SENT = re.compile(r"^\s*\*?(Sent|Date|Отправлено|Дата|Gesendet|Datum|Envoyé|Wysłano)\s*:\*?\s", re.IGNORECASE)
_ORIGINAL = re.compile(
    r"^\s*-{2,}\s*(Original Message|Исходное сообщение|Ursprüngliche Nachricht|Message d'origine)\s*-{2,}\s*$",
    re.IGNORECASE,
)
_UNDERSCORES = re.compile(r"^\s*_{10,}\s*$")
_WROTE = re.compile(r"\b(wrote|writes|написал|написала|написал\(а\)|пишет|schrieb|a écrit)\s*:\s*$", re.IGNORECASE)
_ON = re.compile(r"^\s*(On|Le|Am)\s", re.IGNORECASE)
#: An attribution line without a verb (Gmail in Russian: "пн, 24 нояб. 2026 г. в 10:00, Имя <a@b>:").
_ATTRIBUTION_NO_VERB = re.compile(r"\d{1,2}:\d{2}.*<[^<>\s]+@[^<>\s]+>\s*:\s*$")
_SIGNATURE = re.compile(r"^--\s?$")
_SIGNOFF = re.compile(
    r"^\s*(с уважением|с наилучшими пожеланиями|всего доброго|всего хорошего|best regards|kind regards|"
    r"regards|best wishes|sincerely|cheers)\s*[,.!]?\s*$",
    re.IGNORECASE,
)
_MOBILE = re.compile(
    r"^\s*(Sent from my \w+|Отправлено (с|из) .+|Get Outlook for \w+|Получить Outlook для \w+)\s*$", re.IGNORECASE
)


def _is_attribution(lines: list[str], i: int) -> bool:
    line = lines[i].strip()
    if not line:
        return False
    if _WROTE.search(line) or _ATTRIBUTION_NO_VERB.search(line):
        return True
    # "On Mon, 24 Nov 2026 at 10:00, Name <\naddress> wrote:" wrapped over two lines
    if _ON.match(line) and i + 1 < len(lines):
        return bool(_WROTE.search(lines[i + 1].strip()) or _ATTRIBUTION_NO_VERB.search(line + " " + lines[i + 1]))
    return False


def _is_outlook_header(lines: list[str], i: int) -> bool:
    if not _HEADER_FROM.match(lines[i]):
        return False
    return any(_HEADER_SENT.match(line) for line in lines[i + 1 : i + 4])


def _cut_index(lines: list[str]) -> int:
    """Index of the first line of quoted history (len(lines) when there is none)."""
    for i, line in enumerate(lines):
        if _MARKER_RE.match(line) or _ORIGINAL.match(line) or _is_attribution(lines, i):
            return i
        if _is_outlook_header(lines, i):
            return i
        if _UNDERSCORES.match(line):
            following = [x for x in lines[i + 1 : i + 3] if x.strip()]
            if following and _HEADER_FROM.match(following[0]):
                return i
    return len(lines)


def strip_reply(text: str) -> str:
    """The new text of a reply: quoted history, "> " lines, the "-- " signature and mobile
    signatures removed. Returns "" when nothing new is left."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = lines[: _cut_index(lines)]
    kept: list[str] = []
    for line in lines:
        if _SIGNATURE.match(line):
            break
        if line.lstrip().startswith(">") or _MOBILE.match(line):
            continue
        kept.append(line.rstrip())
    kept = _drop_signoff(kept)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()


def _drop_signoff(lines: list[str]) -> list[str]:
    """Cut a closing formula ("С уважением,", "Regards,") and the few short lines after it (name,
    department), when some text comes before it."""
    for i, line in enumerate(lines):
        if not _SIGNOFF.match(line):
            continue
        tail = [x for x in lines[i + 1 :] if x.strip()]
        if len(tail) <= 6 and all(len(x) <= 80 for x in tail) and any(x.strip() for x in lines[:i]):
            return lines[:i]
    return lines


def language_of(text: str) -> Literal["ru", "en"] | None:
    cyr = sum(1 for ch in text if "а" <= ch.lower() <= "я" or ch.lower() == "ё")
    lat = sum(1 for ch in text if "a" <= ch.lower() <= "z")
    if not cyr and not lat:
        return None
    return "ru" if cyr >= lat * 0.5 else "en"


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


def _kept_headers(msg: Message, problems: list[str]) -> dict[str, str]:
    kept: dict[str, str] = {}
    for key, value in msg.raw_items():
        name = key.lower()
        if (name in KEPT_HEADERS or name.startswith("list-")) and name not in kept:
            kept[name] = decode_header_value(str(value), key, problems)
    return kept


def parse_message(raw: bytes) -> IncomingMail:
    """Parse a raw RFC 5322 message. Never raises: problems are listed on the result."""
    problems: list[str] = []
    try:
        msg = message_from_bytes(raw, policy=compat32)
    except Exception as e:  # noqa: BLE001 - compat32's feed parser does not raise in practice
        log.warning("email.parse_failed error=%s", type(e).__name__)
        text, _ = guess_decode(raw)
        return IncomingMail(
            message_id=f"generated.{hashlib.sha256(raw).hexdigest()[:32]}@helpdesk-assist.invalid",
            message_id_generated=True,
            full_text=text,
            text=text,
            problems=[f"message could not be parsed ({type(e).__name__}); shown as raw text"],
        )
    if msg.defects:
        problems.append("message: " + ", ".join(sorted({type(d).__name__ for d in msg.defects})))

    ids = parse_ids(_raw_header(msg, "message-id"))
    generated = not ids
    message_id = ids[0] if ids else _generated_id(msg)
    in_reply_to = parse_ids(_raw_header(msg, "in-reply-to"))
    senders = _addresses(msg, "from", problems)
    from_name, from_addr = senders[0] if senders else ("", "")

    collected = _Collected()
    _walk(msg, collected, problems)
    from_html = not collected.plain and bool(collected.html)
    if collected.plain:
        full_text = "\n".join(collected.plain).strip()
        text = strip_reply(full_text)
    elif collected.html:
        joined = "\n".join(collected.html)
        full_text = html_to_text(joined)
        text = strip_reply(html_to_text(joined, drop_quotes=True))
    else:
        full_text = text = ""
    if not text:
        text = full_text

    return IncomingMail(
        message_id=message_id,
        message_id_generated=generated,
        in_reply_to=in_reply_to[0] if in_reply_to else None,
        references=parse_ids(_raw_header(msg, "references")),
        from_addr=from_addr,
        from_name=from_name,
        to=[a for _, a in _addresses(msg, "to", problems)],
        cc=[a for _, a in _addresses(msg, "cc", problems)],
        reply_to=[a for _, a in _addresses(msg, "reply-to", problems)],
        subject=decode_header_value(_raw_header(msg, "subject"), "Subject", problems),
        date=_parse_date(_raw_header(msg, "date"), problems),
        text=text,
        full_text=full_text,
        from_html=from_html,
        content_type=msg.get_content_type(),
        attachments=collected.attachments,
        language=language_of(text),
        headers=_kept_headers(msg, problems),
        problems=problems,
    )
