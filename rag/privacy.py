"""Masking of personal data before text reaches an LLM.

E-mail addresses become ``[email]`` and phone numbers ``[phone]``. Phones are recognised by their
shape, Russian formats first (``+7``/``8``/``7`` with a 3-5 digit code in brackets or not, spaces and
dashes between groups; ``(495) 123-45-67``; ``912 345-67-89``; city numbers ``123-45-67``) and
international ``+CC ...`` numbers with 8 to 15 digits. Extensions such as ``доб. 1234`` or
``ext. 123`` are left as they are: a short internal number identifies an office line, not a person.

Things that look like numbers but are not phones are kept: dates, times, IP addresses, versions
(``8.3.22.1709``), error codes (``0x80070005``, ``-2147024891``), MAC addresses and ticket numbers
(``INC-0012345``, ``#1234567``, ``№ 80012345678``). Dots, colons and slashes never separate phone
groups, and a candidate glued to a letter, digit, ``#``, ``№``, ``-``, ``.``, ``/`` or ``+`` is skipped.
"""

from __future__ import annotations

import re

EMAIL_MASK = "[email]"
PHONE_MASK = "[phone]"

_EMAIL = re.compile(
    r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}(?![\w-])",
    re.UNICODE,
)

# One optional separator between digit groups: a space (incl. no-break), a dash, or a spaced dash.
_S = r"(?:[ \u00a0]?[-\u2010-\u2015][ \u00a0]?|[ \u00a0])?"
# A separator that must be there.
_SR = r"(?:[ \u00a0]?[-\u2010-\u2015][ \u00a0]?|[ \u00a0])"


def _code(n: int) -> str:
    """An area code of ``n`` digits, optionally in brackets (spaces allowed inside the brackets)."""
    return rf"(?:\([ \u00a0]?[0-9]{{{n}}}[ \u00a0]?\)|[0-9]{{{n}}})"


# After the trunk prefix: 10 digits as code(3) 3-2-2, code(4) 2-2-2 or code(5) 1-2-2.
_RU_TAIL = (
    rf"(?:{_code(3)}{_S}[0-9]{{3}}{_S}[0-9]{{2}}{_S}[0-9]{{2}}"
    rf"|{_code(4)}{_S}[0-9]{{2}}{_S}[0-9]{{2}}{_S}[0-9]{{2}}"
    rf"|{_code(5)}{_S}[0-9]{_S}[0-9]{{2}}{_S}[0-9]{{2}})"
)

_PHONE = re.compile(
    r"(?<![\w#№/+\-\u2010-\u2015])(?<![0-9]\.)"
    r"(?:"
    # +7 / 8 / 7 followed by a ten-digit national number.
    rf"(?P<ru>(?:\+[ \u00a0]?7|8|7){_S}{_RU_TAIL})"
    # Any other international number: + country code, groups of digits (brackets allowed).
    rf"|(?P<intl>\+[ \u00a0]?[0-9]{{1,3}}(?:{_S}\(?[0-9]{{1,5}}\)?){{1,6}})"
    # A ten-digit national number without the prefix: (495) 123-45-67, 912 345-67-89.
    rf"|(?P<bracket>\([0-9]{{3,5}}\){_S}[0-9]{{1,3}}{_S}[0-9]{{2}}{_S}[0-9]{{2}})"
    rf"|(?P<national>[0-9]{{3}}{_SR}[0-9]{{3}}{_SR}[0-9]{{2}}{_SR}[0-9]{{2}})"
    # A seven-digit city number written with dashes: 123-45-67.
    r"|(?P<city>[0-9]{3}-[0-9]{2}-[0-9]{2})"
    r")"
    r"(?![\w/]|[.:,\-\u2010-\u2015][0-9]|[ \u00a0][-\u2010-\u2015][ \u00a0]?[0-9])",
    re.UNICODE,
)

# Marks of a ticket or document number right before a candidate ("№ 80012345678", "# 123-45-67").
_NUMBER_MARK = re.compile(r"(?:№|#|\bN|\bNo\.?|\bзаявк[аиуе]|\bticket)[ \u00a0]*$", re.IGNORECASE)


def _digits(s: str) -> str:
    return re.sub(r"[^0-9]", "", s)


def _replace_phone(m: re.Match[str]) -> str:
    text = m.group(0)
    before = m.string[max(0, m.start() - 16) : m.start()]
    if _NUMBER_MARK.search(before):
        return text
    digits = _digits(text)
    if m.group("ru") is not None:
        if "(" in text and ")" not in text:
            return text
        if text.isdigit():
            # A bare 11-digit run (no separators, no "+"): only a mobile number 8/7 9xx... counts;
            # other bare runs are far more often ticket, account or serial numbers.
            return PHONE_MASK if digits[1] == "9" else text
        return PHONE_MASK
    if m.group("intl") is not None:
        if text.count("(") != text.count(")"):
            return text
        return PHONE_MASK if 8 <= len(digits) <= 15 else text
    return PHONE_MASK


def mask_pii(text: str) -> str:
    """Replace e-mail addresses with ``[email]`` and phone numbers with ``[phone]``."""
    if not text:
        return text
    text = _EMAIL.sub(EMAIL_MASK, text)
    return _PHONE.sub(_replace_phone, text)


def phone_spans(text: str) -> list[tuple[int, int]]:
    """Where :func:`mask_pii` finds phone numbers in ``text``: ``(start, end)`` of each, in order."""
    if not text:
        return []
    return [m.span() for m in _PHONE.finditer(text) if _replace_phone(m) == PHONE_MASK]
