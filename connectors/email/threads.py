"""Threading: our Message-IDs carry the conversation id, so a reply is matched by its In-Reply-To /
References; a subject tag ``[HA-xxxxxx]`` is the fallback for clients that drop those headers.

Our ids look like ``<ha.{conversation}.{uuid hex}@{domain}>``; a conversation id is 6 to 32 lowercase
hex digits or letters/digits/dashes without dots (what the pipeline chooses).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable

_CONV_RE = r"[a-z0-9][a-z0-9-]{0,63}"
_OUR_ID_RE = re.compile(rf"^<?ha\.({_CONV_RE})\.[0-9a-f]{{8,32}}@([^<>\s]+?)>?$", re.IGNORECASE)
_TAG_RE = re.compile(rf"\[HA-({_CONV_RE})\]", re.IGNORECASE)


def _check_conversation(conversation_id: str) -> str:
    if not re.fullmatch(_CONV_RE, conversation_id):
        raise ValueError("conversation id must be letters, digits and dashes (no dots), at most 64 characters")
    return conversation_id


def new_message_id(domain: str, conversation_id: str) -> str:
    """A fresh Message-ID for a message of this conversation: ``<ha.{conv}.{uuid}@domain>``."""
    domain = domain.strip().strip("<>").lstrip("@")
    if not domain or any(c in domain for c in "<>@ \t"):
        raise ValueError("message id domain must be a bare domain, e.g. support.example.com")
    return f"<ha.{_check_conversation(conversation_id)}.{uuid.uuid4().hex}@{domain}>"


def conversation_of(message_id: str, domain: str | None = None) -> str | None:
    """The conversation id in one of our Message-IDs (optionally only on ``domain``), else None."""
    m = _OUR_ID_RE.match(message_id.strip())
    if not m:
        return None
    if domain is not None and m.group(2).lower() != domain.lower():
        return None
    return m.group(1).lower()


def conversation_from_headers(
    in_reply_to: str | None, references: Iterable[str] | str | None, domain: str | None = None
) -> str | None:
    """The conversation a reply belongs to, from our ids in In-Reply-To then References (newest first).

    ``references`` is a list of ids or the raw header value; ids with or without angle brackets.
    """
    candidates: list[str] = []
    if in_reply_to:
        candidates.extend(re.findall(r"<?[^<>\s]+>?", in_reply_to))
    if isinstance(references, str):
        refs = re.findall(r"<?[^<>\s]+>?", references)
    else:
        refs = list(references or [])
    candidates.extend(reversed(refs))
    for candidate in candidates:
        conv = conversation_of(candidate, domain)
        if conv:
            return conv
    return None


def subject_tag(conversation_id: str) -> str:
    return f"[HA-{_check_conversation(conversation_id)}]"


def add_subject_tag(subject: str, conversation_id: str) -> str:
    """``subject`` with our tag at the end, exactly once (an existing tag of this conversation kept)."""
    tag = subject_tag(conversation_id)
    if tag.lower() in subject.lower():
        return subject
    return f"{subject.rstrip()} {tag}".strip()


def find_subject_tag(subject: str) -> str | None:
    """The conversation id in a subject tag ``[HA-xxxxxx]``, if any (the last one wins)."""
    found = _TAG_RE.findall(subject or "")
    return found[-1].lower() if found else None


_RE_PREFIX = re.compile(r"^\s*((re|fw|fwd|aw|wg|sv|отв|ответ|пересл)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)


def reply_subject(subject: str) -> str:
    """``Re: <subject>`` without piling prefixes (RE:, Fwd:, AW:, Отв: are collapsed)."""
    base = _RE_PREFIX.sub("", subject or "").strip()
    return f"Re: {base}" if base else "Re:"
