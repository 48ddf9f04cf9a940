"""Loop protection: messages we must never answer automatically (RFC 3834, RFC 2369/2919, bounces,
MS-OXCMAIL's X-Auto-Response-Suppress).

:func:`automatic_reason` returns a plain reason ("Auto-Submitted: auto-replied") for the log and the
note on a forwarded message, or None for a message a person wrote that may be answered.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from email.message import Message
from email.utils import getaddresses

from connectors.email.parse import IncomingMail, decode_header_value, parse_ids

#: Local parts of senders that are systems, not people.
_SYSTEM_SENDER = re.compile(
    r"^(mailer-daemon|postmaster|no[-_.]?reply|do[-_.]?not[-_.]?reply|bounces?|mail-?daemon)([+-].*)?$",
    re.IGNORECASE,
)


def _headers_of(msg: IncomingMail | Message | Mapping[str, str]) -> dict[str, str]:
    if isinstance(msg, IncomingMail):
        return dict(msg.headers)
    if isinstance(msg, Message):
        out: dict[str, str] = {}
        for key, value in msg.items():
            out.setdefault(key.lower(), decode_header_value(str(value), key, []))
        return out
    return {k.lower(): str(v) for k, v in msg.items()}


def _sender_and_meta(msg: IncomingMail | Message | Mapping[str, str]) -> tuple[str, str, list[str]]:
    """(from address, top-level content type, own message ids to test: Message-ID)."""
    if isinstance(msg, IncomingMail):
        return msg.from_addr, msg.content_type, [msg.message_id]
    if isinstance(msg, Message):
        addrs = getaddresses([str(v) for v in msg.get_all("From", [])])
        return (addrs[0][1].lower() if addrs else ""), msg.get_content_type(), parse_ids(msg.get("Message-ID"))
    h = {k.lower(): str(v) for k, v in msg.items()}
    addrs = getaddresses([h.get("from", "")])
    ctype = h.get("content-type", "text/plain").split(";")[0].strip().lower()
    return (addrs[0][1].lower() if addrs else ""), ctype, parse_ids(h.get("message-id"))


def automatic_reason(
    msg: IncomingMail | Message | Mapping[str, str],
    own_addresses: Iterable[str] = (),
    ignore_patterns: Iterable[str] = (),
    own_message_id_domains: Iterable[str] = (),
) -> str | None:
    """Why this message must not get an automatic answer, or None when it may.

    ``own_addresses``: our sending address(es) (the domain part of each is also taken as one of our
    Message-ID domains, with ``own_message_id_domains``); ``ignore_patterns``: regular expressions
    (case-insensitive, searched in the sender address) from ``EmailSettings.ignore_senders``.
    """
    headers = _headers_of(msg)
    sender, content_type, ids = _sender_and_meta(msg)

    auto = headers.get("auto-submitted", "").split(";")[0].strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    precedence = headers.get("precedence", "").strip().lower()
    if precedence in ("bulk", "junk", "list"):
        return f"Precedence: {precedence}"
    list_headers = sorted(k for k in headers if k.startswith("list-"))
    if list_headers:
        return f"mailing list ({list_headers[0]} header)"
    for name in ("x-autoreply", "x-autorespond"):
        if name in headers and headers[name].strip().lower() not in ("no", "false", "0"):
            return f"{name}: {headers[name].strip() or 'present'}"
    if "return-path" in headers and headers["return-path"].strip().replace(" ", "") in ("<>", ""):
        return "empty Return-Path (a bounce or delivery report)"
    if content_type == "multipart/report":
        return "multipart/report (a delivery or read report)"
    if "x-failed-recipients" in headers:
        return "X-Failed-Recipients (a bounce)"
    if not sender:
        return "no sender address"
    local = sender.split("@")[0]
    if _SYSTEM_SENDER.match(local):
        return f"system sender ({local})"
    own = [a.strip().lower() for a in own_addresses if a and a.strip()]
    if sender in own:
        return "sent by our own address"
    domains = {d.strip().lower().lstrip("@") for d in own_message_id_domains if d and d.strip()}
    domains |= {a.split("@", 1)[1] for a in own if "@" in a}
    for mid in ids:
        if mid.lower().startswith("ha.") and mid.rsplit("@", 1)[-1].lower() in domains:
            return "our own Message-ID (a copy of a message we sent)"
    for pattern in ignore_patterns:
        if pattern and re.search(pattern, sender, re.IGNORECASE):
            return f"sender matches ignore pattern {pattern!r}"
    suppress = headers.get("x-auto-response-suppress")
    if suppress is not None and suppress.strip().lower() not in ("none", ""):
        return f"X-Auto-Response-Suppress: {suppress.strip()} (asks for no automatic reply)"
    return None
