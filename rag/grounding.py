"""Links, contacts, paths and secrets in an answer must come from the entries it cites.

The requester trusts what is posted in the helpdesk's name. A model that invents, or was talked into
by a prompt injection in a ticket or an entry, a link to a foreign site, a "support" address or phone,
a path to a share or a "temporary password" must never reach them: :func:`ungrounded` lists the items
of an answer that its sources do not contain, and :mod:`rag.compose` then falls back to the entries.

Items are found on the NFKC form of the text (fullwidth look-alikes fold to ASCII), each kind blanked
out once found so that an address is not also read as a host or a path:

- link: any ``scheme://`` URL (``\\\\`` too), ``javascript:``, ``data:``, ``mailto:`` and ``tel:`` URIs,
  ``www.`` addresses, IPv4 addresses, bare host names with a common top-level domain or a path or port,
  the target of a Markdown link; a Markdown link whose text names another address than its target is a
  disguise and never grounded;
- e-mail address (also ``name (at) host (dot) ru``) and messenger handle (``@name``);
- phone number: what :func:`rag.privacy.mask_pii` masks as one;
- file path: Windows drive paths, UNC paths, ``%VAR%\\...`` paths, ``~/...`` and Unix absolute paths of
  two parts or more;
- credential: a value after password / пароль / PIN / token / ... that looks like a secret (digits,
  symbols or mixed case), and long random-looking strings.

Matching: links without their http(s) scheme, the host lower-cased and IDNA-encoded (a Cyrillic "а" in
a host stays a different host), default ports, trailing slashes and trailing punctuation dropped; an
answer link may also be a parent (same host, a path prefix) of a source link, never a child or a
sibling. E-mail addresses and handles case-insensitively; phone numbers by their digits (``8`` and
``+7`` alike, a city number matching the end of a full one); paths case-insensitively with ``/`` and
``\\`` alike, an ancestor of a source path counting; credentials only verbatim.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal
from urllib.parse import unquote, urlsplit

from rag.privacy import phone_spans

Kind = Literal[
    "link", "disguised link", "e-mail address", "messenger handle", "phone number", "file path", "credential"
]

#: How each kind is named in a fallback reason.
KIND_WORDS: dict[Kind, str] = {
    "link": "a link",
    "disguised link": "a link whose text and target differ",
    "e-mail address": "an e-mail address",
    "messenger handle": "a messenger handle",
    "phone number": "a phone number",
    "file path": "a file path",
    "credential": "a password or other secret",
}


@dataclass(frozen=True)
class Item:
    kind: Kind
    #: The normalized form compared with the sources' items.
    key: str
    #: As written (NFKC, trailing punctuation dropped). Personal data or a phishing link: never log it.
    text: str


# --------------------------------------------------------------------------------------------------
# Patterns
# --------------------------------------------------------------------------------------------------

#: Punctuation that ends a sentence rather than an address.
_TRAILING = ".,;:!?'\"»”’…—–"
# Markdown inline link: [text](target "title").
_MD_LINK = re.compile(r"\[([^\]\n]{0,300})\]\(\s*<?([^)\s>]*)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
_URL_CHARS = r"[^\s<>\"«»“”{}|^`]"
# Any scheme followed by // (or \\, which browsers read the same), and the schemes that need none.
_SCHEME_URL = re.compile(
    rf"(?<![\w.+-])(?:[a-z][a-z0-9+.-]{{1,30}}:[\\/]{{2}}|(?:mailto|tel|callto|sip|javascript|vbscript|data|file"
    rf"|skype|tg|viber|whatsapp|ms-[a-z-]+|search-ms):){_URL_CHARS}+",
    re.IGNORECASE,
)
_WWW = re.compile(rf"(?<![\w.@/-])www\.{_URL_CHARS}+", re.IGNORECASE)
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}(?![\w-])")
_OBFUSCATED_EMAIL = re.compile(
    r"(?<![\w.+-])([\w.+-]+)\s*[(\[{]\s*(?:at|собака)\s*[)\]}]\s*"
    r"([\w-]+(?:\s*(?:[(\[{]\s*(?:dot|точка)\s*[)\]}]|\.)\s*[\w-]+)+)",
    re.IGNORECASE,
)
_OBFUSCATED_DOT = re.compile(r"\s*(?:[(\[{]\s*(?:dot|точка)\s*[)\]}]|\.)\s*", re.IGNORECASE)
_HANDLE = re.compile(r"(?<![\w@.])@[A-Za-z][A-Za-z0-9_]{3,31}(?![\w@]|\.\w)")
_PATH_CHARS = r"[^\s\\/\"'«»<>|*?]"
_UNC = re.compile(rf"(?<![\w\\/:])[\\/]{{2}}[\w.$-]+(?:[\\/]{_PATH_CHARS}+)+[\\/]?")
_DRIVE = re.compile(rf"(?<![\w])[A-Za-z]:[\\/](?:{_PATH_CHARS}+[\\/]?)*")
_ENV_PATH = re.compile(rf"%[A-Za-z_][\w()]*%(?:[\\/]{_PATH_CHARS}+)+[\\/]?")
_UNIX_PATH = re.compile(r"(?<![\w/:.~\\%-])~?/(?:[\w.+-]+/)+[\w.+-]*")
_IPV4 = re.compile(rf"(?<![\w.])(?:\d{{1,3}}\.){{3}}\d{{1,3}}(?::\d{{1,5}})?(?:/{_URL_CHARS}*)?(?![\w]|\.\d)")
#: Top-level domains that make a bare ``name.tld`` a host (file extensions such as .exe are not here).
_TLDS = frozenset(
    "com net org info biz name pro ru su рф xn--p1ai ua by kz uz am az ge kg tj tm "
    "de uk us eu fr it es nl be ch at se no fi dk pl cz sk ee lv lt ro bg hu gr pt ie il tr "
    "cn jp kr in vn th sg hk tw au nz ca mx br ar co io me tv cc dev page cloud site online "
    "store shop website space tech xyz top club link click live life world today news blog email "
    "support help services service center network systems solutions group company host hosting "
    "digital one global plus zone works tools download win best fun icu vip local lan corp internal "
    "intranet home".split()
)
_BARE_HOST = re.compile(
    rf"(?<![\w@./\\-])((?:[^\W_](?:[\w-]{{0,61}}[^\W_])?\.)+([^\W\d_]{{2,24}}|xn--[a-z0-9-]{{2,59}}))"
    rf"(:\d{{1,5}})?(/{_URL_CHARS}*)?(?![\w@-])",
    re.IGNORECASE,
)
_CRED_WORDS = (
    r"пароль|пароля|паролем|паролю|пасворд|password|passwd|passphrase|pass\s?code|pwd"
    r"|pin(?:[- ]?(?:код|code))?|пин(?:[- ]?код)?|token|токен(?:\s+доступа)?|api[- _]?key|secret|секрет"
    r"|ключ\s+доступа|код\s+(?:доступа|подтверждения|восстановления|активации)"
    r"|(?:access|verification|recovery|one[- ]time|security)\s+code"
)
# "пароль для входа: Qwerty1", "your password is Spring2024": a separator within three words ...
_CREDENTIAL_SEP = re.compile(
    rf"(?<!\w)(?:{_CRED_WORDS})(?!\w)(?:\s+[^\s:=—–]+){{0,3}}?"
    r"\s*(?:[:=—–]|\s-\s|\bis\b|\bэто\b|\bбудет\b)\s*[\"'«“„]?(?P<value>[^\s\"'»”]+)",
    re.IGNORECASE,
)
# ... or the value right after the word: "PIN-код 4831", "временный пароль Qwerty123".
_CREDENTIAL_DIRECT = re.compile(rf"(?<!\w)(?:{_CRED_WORDS})(?!\w)\s+[\"'«“„]?(?P<value>[^\s\"'»”]+)", re.IGNORECASE)
_SECRET_SYMBOLS = set("!@#$%^&*_+=?~/\\|<>")
#: Passwords so common that a model writing one as "your password" is handing out a secret.
_COMMON_PASSWORDS = frozenset({"qwerty", "password", "admin", "letmein", "welcome", "changeme", "default", "secret"})
_RANDOM = re.compile(r"(?<![\w/+=.-])[A-Za-z0-9+/=_-]{16,}(?![\w/+=-])")
_CITATION = re.compile(r"^\[\s*\d{1,3}(?:\s*[,;]\s*\d{1,3})*\s*\]$")


# --------------------------------------------------------------------------------------------------
# Normalization
# --------------------------------------------------------------------------------------------------


def _trim(text: str) -> str:
    """Drop sentence punctuation after an address, and closing brackets it does not open."""
    while text:
        last = text[-1]
        if last in _TRAILING:
            text = text[:-1]
        elif last in ")]" and text.count(last) > text.count("(" if last == ")" else "["):
            text = text[:-1]
        else:
            break
    return text


def _idna(host: str) -> str:
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return host.casefold()


def _link_key(url: str) -> str:
    """``host[:port]/path?query#fragment`` for http(s) and bare addresses; ``scheme:rest`` for others."""
    url = url.strip().replace("\\", "/")
    if not re.match(r"[a-z][a-z0-9+.-]*:", url, re.IGNORECASE) or re.match(r"[a-z]:/", url, re.IGNORECASE):
        url = "http://" + url
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url.casefold()
    scheme = parts.scheme.lower()
    if not parts.netloc:
        return f"{scheme}:{unquote(parts.path)}".casefold()
    userinfo, _, _ = parts.netloc.rpartition("@")
    host = _idna(parts.hostname or "")
    default = {"http": 80, "https": 443, "ftp": 21}.get(scheme)
    netloc = (f"{userinfo}@" if userinfo else "") + host + (f":{port}" if port and port != default else "")
    key = netloc + unquote(parts.path).rstrip("/")
    if parts.query:
        key += "?" + unquote(parts.query)
    if parts.fragment:
        key += "#" + unquote(parts.fragment)
    prefix = "" if scheme in ("http", "https") else f"{scheme}://"
    return (prefix + key).casefold()


def _phone_key(text: str) -> str:
    digits = re.sub(r"\D", "", text)
    if len(digits) == 11 and digits[0] == "8":
        return "7" + digits[1:]
    if len(digits) == 10 and not text.lstrip().startswith("+"):
        return "7" + digits  # (495) 123-45-67: a Russian number without its prefix
    return digits


def _path_key(path: str) -> str:
    path = path.casefold()
    if path.startswith(("/", "~")) and not path.startswith("//"):
        return path.rstrip("/")
    return path.replace("/", "\\").rstrip("\\")


def _looks_secret(value: str) -> bool:
    if len(value) < 4 or _CITATION.match(value) or value.casefold() in ("[email]", "[phone]"):
        return False
    if value.casefold() in _COMMON_PASSWORDS:
        return True
    has_digit = any(c.isdigit() for c in value)
    has_symbol = any(c in _SECRET_SYMBOLS for c in value[:-1])
    mixed_case = any(c.isupper() for c in value[1:]) and any(c.islower() for c in value)
    return has_digit or has_symbol or mixed_case


def _looks_random(token: str) -> bool:
    letters = sum(c.isalpha() for c in token)
    digits = sum(c.isdigit() for c in token)
    if letters < 2 or digits < 2:
        return False

    def cls(c: str) -> int:
        return 0 if c.isdigit() else 1 if c.islower() else 2

    # Separators (ERROR_ACCESS_DENIED, a-b-c) are words joined, not randomness: look at the rest.
    chars = [c for c in token if c.isalnum()]
    changes = sum(cls(a) != cls(b) for a, b in pairwise(chars))
    return changes / len(chars) >= 0.25


# --------------------------------------------------------------------------------------------------
# Finding items
# --------------------------------------------------------------------------------------------------


def _scheme_items(raw: str) -> list[Item]:
    url = _trim(raw)
    scheme = url.split(":", 1)[0].lower()
    rest = url.split(":", 1)[1] if ":" in url else ""
    if scheme == "mailto":
        address = unquote(rest.split("?", 1)[0])
        return [Item("e-mail address", address.casefold(), url)]
    if scheme in ("tel", "callto", "sip"):
        return [Item("phone number", _phone_key(rest), url)]
    return [Item("link", _link_key(url), url)]


def _md_items(m: re.Match[str]) -> list[Item]:
    text, target = m.group(1), _trim(m.group(2))
    inner = find_items(text)
    if not target:
        return inner
    if re.match(r"[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) and not re.match(r"[a-z]:[\\/]", target, re.I):
        targets = _scheme_items(target)
    else:
        targets = [Item("link", _link_key(target), target)]
    shown = [i for i in inner if i.kind in ("link", "e-mail address", "phone number")]
    goes = targets[0]
    if any(not (i.key == goes.key or goes.key.startswith(i.key + "/")) for i in shown):
        return [*inner, *targets, Item("disguised link", "", m.group(0))]
    return [*inner, *targets]


def _bare_host(m: re.Match[str]) -> list[Item]:
    tld = m.group(2).casefold()
    if tld not in _TLDS and not (tld.startswith("xn--") or m.group(3) or m.group(4)):
        return []
    text = _trim(m.group(0))
    return [Item("link", _link_key(text), text)]


def _ipv4(m: re.Match[str]) -> list[Item]:
    address = m.group(0).split(":", 1)[0].split("/", 1)[0]
    if any(int(part) > 255 for part in address.split(".")):
        return []
    text = _trim(m.group(0))
    return [Item("link", _link_key(text), text)]


def _path(m: re.Match[str]) -> list[Item]:
    text = _trim(m.group(0))
    return [Item("file path", _path_key(text), text)] if len(text) > 3 else []


def _credential(m: re.Match[str]) -> list[Item]:
    value = _trim(m.group("value"))
    return [Item("credential", value, value)] if _looks_secret(value) else []


def find_items(text: str) -> list[Item]:
    """Every link, contact, path and credential-like string in ``text``, in the order found."""
    work = unicodedata.normalize("NFKC", text or "")
    found: list[Item] = []

    def take(pattern: re.Pattern[str], items: Callable[[re.Match[str]], list[Item]]) -> None:
        nonlocal work

        def blank(m: re.Match[str]) -> str:
            new = items(m)
            found.extend(new)
            return " " * len(m.group(0)) if new else m.group(0)

        work = pattern.sub(blank, work)

    take(_MD_LINK, _md_items)
    take(_SCHEME_URL, lambda m: _scheme_items(m.group(0)))
    take(
        _OBFUSCATED_EMAIL,
        lambda m: [
            Item("e-mail address", f"{m.group(1)}@{_OBFUSCATED_DOT.sub('.', m.group(2))}".casefold(), m.group(0))
        ],
    )
    take(_EMAIL, lambda m: [Item("e-mail address", m.group(0).casefold(), m.group(0))])
    take(_WWW, lambda m: [Item("link", _link_key(_trim(m.group(0))), _trim(m.group(0)))])
    for pattern in (_UNC, _DRIVE, _ENV_PATH, _UNIX_PATH):
        take(pattern, _path)
    take(_IPV4, _ipv4)
    take(_BARE_HOST, _bare_host)
    take(_HANDLE, lambda m: [Item("messenger handle", m.group(0).casefold(), m.group(0))])
    spans = phone_spans(work)
    for start, end in spans:
        found.append(Item("phone number", _phone_key(work[start:end]), work[start:end]))
    for start, end in spans:
        work = work[:start] + " " * (end - start) + work[end:]
    take(_CREDENTIAL_SEP, _credential)
    take(_CREDENTIAL_DIRECT, _credential)
    take(_RANDOM, lambda m: [Item("credential", m.group(0), m.group(0))] if _looks_random(m.group(0)) else [])
    return found


# --------------------------------------------------------------------------------------------------
# Checking an answer against its sources
# --------------------------------------------------------------------------------------------------


def _same_or_parent(key: str, source_keys: Iterable[str], separator: str) -> bool:
    return any(s == key or s.startswith(key + separator) for s in source_keys)


def ungrounded(answer: str | Iterable[str], sources: Iterable[str]) -> list[Item]:
    """The items of ``answer`` (one text or several forms of it) that ``sources`` do not contain."""
    texts = [answer] if isinstance(answer, str) else list(answer)
    source_texts = [unicodedata.normalize("NFKC", s or "") for s in sources]
    source_items = [i for s in source_texts for i in find_items(s)]
    keys: dict[str, set[str]] = {}
    for i in source_items:
        keys.setdefault(i.kind, set()).add(i.key)
    verbatim = "\n".join(source_texts)
    folded = verbatim.casefold()
    out: list[Item] = []
    for item in (i for t in texts for i in find_items(t)):
        if item in out or _grounded(item, keys, verbatim, folded):
            continue
        out.append(item)
    return out


def _grounded(item: Item, keys: dict[str, set[str]], verbatim: str, folded: str) -> bool:
    if item.kind == "disguised link":
        return False
    if item.kind == "credential":
        return item.text in verbatim
    same = keys.get(item.kind, set())
    if item.key in same:
        return True
    if item.kind == "link" and _same_or_parent(item.key, same, "/"):
        return True
    if item.kind == "file path" and (_same_or_parent(item.key, same, "\\") or _same_or_parent(item.key, same, "/")):
        return True
    if item.kind == "phone number":
        return len(item.key) >= 7 and any(s.endswith(item.key) for s in same)
    # Written exactly as in a source, whatever our patterns made of the source's surroundings.
    return item.kind in ("link", "e-mail address", "file path") and item.text.casefold() in folded


def describe(items: list[Item]) -> str:
    """The fallback reason for ungrounded items: their kinds, never their values."""
    kinds: list[Kind] = []
    for i in items:
        if i.kind not in kinds:
            kinds.append(i.kind)
    if "disguised link" in kinds:
        return f"answer has {KIND_WORDS['disguised link']}"
    words = [KIND_WORDS[k] for k in kinds]
    listed = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
    return f"answer has {listed} not in the cited entries"
