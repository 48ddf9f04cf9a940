"""Who is chatting: the identities the chat knows, as signed values (no Flask here).

- **Anonymous cookie** (the default): a random id (``secrets.token_urlsafe(18)``) signed with the
  service's ``secret_key`` (itsdangerous, HMAC-SHA256, salt ``helpdesk-assist/chat/v1``); the page sets
  it HttpOnly, SameSite=Lax. The owner of its conversations is ``c:<id>``. Without a configured
  ``secret_key`` a per-process key is used and cookies stop working at the next restart.
- **Trusted header** (``chat.identity_header``, e.g. ``X-Remote-User`` from the SSO proxy): the owner is
  ``u:<login>`` (case-folded); the API's ``X-Chat-User`` (behind an API key) is the same namespace.
- **Restore link** ("send me a link"): a timed token carrying the cookie id, mailed to the person; the
  page it opens asks to confirm by POST (GET changes nothing), then sets that cookie on this browser.

CSRF: every chat form carries ``csrf_token(owner)``, an HMAC of the owner under the same secret: another
site cannot read it, and it differs per person.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

from itsdangerous import BadData, URLSafeSerializer, URLSafeTimedSerializer

SALT = "helpdesk-assist/chat/v1"
RESTORE_SALT = "helpdesk-assist/chat-restore/v1"
#: Longest cookie / token read (a signed id is about 60 characters).
MAX_TOKEN_CHARS = 300
MAX_LOGIN_CHARS = 254


@dataclass(frozen=True)
class Identity:
    #: The owner of the conversations (``c:<id>`` or ``u:<login>``).
    owner: str
    kind: Literal["cookie", "header", "api"]
    #: The person's login in the helpdesk when the identity says it (trusted header, API).
    login: str = ""


class ChatIdentities:
    def __init__(self, secret: str, *, restore_max_age_s: float = 86_400.0) -> None:
        self._cookie = URLSafeSerializer(secret, salt=SALT, signer_kwargs={"digest_method": hashlib.sha256})
        self._restore = URLSafeTimedSerializer(secret, salt=RESTORE_SALT,
                                               signer_kwargs={"digest_method": hashlib.sha256})
        self._csrf_key = hmac.new(secret.encode(), b"chat-csrf", hashlib.sha256).digest()
        self.restore_max_age_s = restore_max_age_s

    # -- the anonymous cookie ----------------------------------------------------------------------
    def new_cookie(self) -> tuple[Identity, str]:
        """A new anonymous identity and the cookie value that carries it."""
        cid = secrets.token_urlsafe(18)
        return Identity(owner=f"c:{cid}", kind="cookie"), str(self._cookie.dumps(cid))

    def from_cookie(self, value: str | None) -> Identity | None:
        """The identity a cookie we signed carries; None for anything else."""
        if not value or len(value) > MAX_TOKEN_CHARS:
            return None
        try:
            cid = self._cookie.loads(value)
        except BadData:
            return None
        if not isinstance(cid, str) or not cid:
            return None
        return Identity(owner=f"c:{cid}", kind="cookie")

    def cookie_for(self, identity: Identity) -> str:
        if identity.kind != "cookie":
            raise ValueError("only an anonymous identity is carried by the cookie")
        return str(self._cookie.dumps(identity.owner.removeprefix("c:")))

    # -- trusted logins ------------------------------------------------------------------------------
    @staticmethod
    def from_login(login: str, kind: Literal["header", "api"]) -> Identity | None:
        """A person named by the SSO proxy's header or an API caller; None when the value is unusable."""
        value = (login or "").strip()
        if not value or len(value) > MAX_LOGIN_CHARS or any(c.isspace() or ord(c) < 32 for c in value):
            return None
        return Identity(owner=f"u:{value.casefold()}", kind=kind, login=value)

    # -- CSRF ----------------------------------------------------------------------------------------
    def csrf_token(self, owner: str) -> str:
        return hmac.new(self._csrf_key, owner.encode(), hashlib.sha256).hexdigest()[:40]

    def csrf_ok(self, owner: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token(owner), token or "")

    # -- restore links ---------------------------------------------------------------------------------
    def restore_token(self, identity: Identity) -> str:
        if identity.kind != "cookie":
            raise ValueError("only an anonymous identity needs a restore link")
        return str(self._restore.dumps(identity.owner.removeprefix("c:")))

    def from_restore(self, token: str) -> Identity | None:
        """The identity a restore link carries; None when it is not ours or has expired."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        try:
            cid = self._restore.loads(token, max_age=int(self.restore_max_age_s))
        except BadData:
            return None
        return Identity(owner=f"c:{cid}", kind="cookie") if isinstance(cid, str) and cid else None
