"""Text cleaning, normalization and language detection (Russian first, English too)."""

from __future__ import annotations

import html
import re
import unicodedata

# Zero-width and BOM characters that survive copy-paste from Word, Outlook and web pages.
_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
# C0/C1 control characters except tab and newline.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_TAG = re.compile(r"<\s*(br|p|div|li|tr|h[1-6])\b[^>]*>", re.IGNORECASE)
# Only real HTML tag names: "<Ctrl>+<Alt>+<Del>" or "<имя пользователя>" in an answer must survive.
_HTML_TAGS = (  # <del>, <ins>, <kbd> ... left out: "<Del>", "<Ins>" are keys in support answers
    "a|abbr|address|article|b|big|blockquote|body|br|caption|center|code|col|colgroup|dd|div|dl|dt|em|"
    "font|footer|form|h[1-6]|head|header|hr|html|i|img|input|label|li|link|main|meta|nav|"
    "o:p|ol|p|pre|section|small|span|strike|strong|style|sub|sup|table|tbody|td|tfoot|th|thead|"
    "title|tr|u|ul|wbr"
)
_ANY_TAG = re.compile(rf"</?(?:{_HTML_TAGS})(?:\s[^<>]*)?/?>", re.IGNORECASE)
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_WORD = re.compile(r"\w+", re.UNICODE)
_CYRILLIC = re.compile(r"[а-яё]", re.IGNORECASE)
_LATIN = re.compile(r"[a-z]", re.IGNORECASE)


def clean_text(value: object) -> str:
    """Turn a cell or message body into clean text.

    Removes zero-width and control characters and HTML remnants (tags, entities), unifies line
    breaks and collapses runs of spaces; keeps paragraphs. ``None`` becomes ``""``.
    """
    if value is None:
        return ""
    text = str(value)
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "<" in text and ">" in text:
        text = _TAG.sub("\n", text)
        text = _ANY_TAG.sub("", text)
    if "&" in text:
        text = html.unescape(text)
    text = _ZERO_WIDTH.sub("", text)
    text = _CONTROL.sub("", text)
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()


def normalize_for_match(text: str) -> str:
    """Case- and whitespace-insensitive form used to compare answers (and gold answers in eval)."""
    text = clean_text(text).casefold().replace("ё", "е")
    return " ".join(text.split())


def detect_language(text: str, default: str = "ru") -> str:
    """``"ru"`` or ``"en"`` by the script of the words; ``default`` when there are none.

    Russian requests carry Latin product names ("Ошибка в Microsoft Office Outlook"), so a few
    Cyrillic words make a text Russian; a Russian name in an English sentence does not.
    """
    tokens = _WORD.findall(text)
    cyr = sum(1 for t in tokens if _CYRILLIC.search(t))
    lat = sum(1 for t in tokens if _LATIN.search(t) and not _CYRILLIC.search(t))
    if cyr == 0 and lat == 0:
        return default
    return "ru" if cyr > 0 and cyr >= 0.2 * lat else "en"


def words(text: str) -> list[str]:
    return _WORD.findall(text.casefold().replace("ё", "е"))


_URL = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)
_GREETING = re.compile(
    r"^\s*(здравствуйте|здраствуйте|добрый\s+(день|вечер)|доброе\s+утро|доброго\s+времени\s+суток|привет(ствую)?"
    r"|hello|hi|dear\s+support|good\s+(morning|afternoon|evening))\b[\s!,.:)]*",
    re.IGNORECASE,
)
_SIGNATURE = re.compile(
    r"(\n\s*--\s*\n.*|\n\s*(с уважением|best regards|regards|kind regards)\b.*)$",
    re.IGNORECASE | re.DOTALL,
)
# "... --Надежда" or "... -- Иван Петров" at the very end: a name, so case-sensitive (a dash followed by
# "ошибка формата потока" is part of the request).
_NAME_SIGNATURE = re.compile(r"\s--\s?[А-ЯЁA-Z][а-яёa-z]+(?:\s[А-ЯЁA-Z][а-яёa-z.]*){0,2}\s*$")


def clean_query(text: str) -> str:
    """The part of a request that carries its meaning: no links, greeting or signature."""
    text = clean_text(text)
    stripped = _NAME_SIGNATURE.sub("", _SIGNATURE.sub("", text))
    stripped = _URL.sub(" ", stripped)
    stripped = _GREETING.sub("", stripped)
    stripped = " ".join(stripped.split())
    return stripped or " ".join(text.split())
