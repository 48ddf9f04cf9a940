"""Signed "solved / not solved" links: ``{public_url}/r/<token>``.

A token is ``payload.timestamp.signature`` from itsdangerous (``URLSafeTimedSerializer``, HMAC-SHA256,
salt ``helpdesk-assist/confirm/v1``). The payload is the suggestion id and the action, so a token is
bound to one suggestion (hence one ticket) and one action; the timestamp gives the expiry. About 95
characters for a 24-character suggestion id.

The signature's base64 text must be canonical: base64 without padding leaves spare bits in its last
character, so two texts can decode to the same signature; :meth:`LinkSigner.read` refuses the
non-canonical ones so that changing any character of a token makes it invalid.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any, Literal, cast

from itsdangerous import BadData, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_decode, base64_encode
from pydantic import BaseModel, ConfigDict

from helpdesk_errors import HelpdeskError

Action = Literal["solved", "not_solved"]
ACTIONS: tuple[Action, ...] = ("solved", "not_solved")
SALT = "helpdesk-assist/confirm/v1"
#: One letter per action in the payload keeps the token short.
_CODE: dict[Action, str] = {"solved": "s", "not_solved": "n"}
_ACTION: dict[str, Action] = {code: action for action, code in _CODE.items()}


class LinkError(HelpdeskError):
    """A confirmation link that cannot be used."""


class LinkInvalid(LinkError):
    """Not a token we signed: tampered, truncated, another secret, or not a token at all."""


class LinkExpired(LinkError):
    """A token we signed, older than the link lifetime. ``claim`` is what it said (it is authentic)."""

    def __init__(self, message: str, claim: LinkClaim) -> None:
        super().__init__(message)
        self.claim = claim


class LinkClaim(BaseModel):
    model_config = ConfigDict(frozen=True)

    suggestion_id: str
    action: Action
    #: Unix time the link was signed at (whole seconds).
    issued_at: float


def other_action(action: Action) -> Action:
    return "not_solved" if action == "solved" else "solved"


def _clocked_signer(clock: Callable[[], float]) -> type[TimestampSigner]:
    class _ClockedSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(clock())

    return _ClockedSigner


class LinkSigner:
    """Signs and reads confirmation links. ``clock`` is injectable for tests."""

    def __init__(
        self, secret: str, lifetime_s: float | Callable[[], float], public_url: str, *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``lifetime_s``: seconds, or a function asked at each read (the admin's run-time override)."""
        if not secret:
            raise LinkError("a secret key is required to sign confirmation links")
        self._lifetime = lifetime_s if callable(lifetime_s) else (lambda: float(lifetime_s))
        if self.lifetime_s <= 0:
            raise LinkError(f"the link lifetime must be positive, got {self.lifetime_s}")
        self._secret = secret
        self.public_url = public_url.rstrip("/")
        self._clock = clock
        self._serializer = self._make_serializer(clock)

    @property
    def lifetime_s(self) -> float:
        return float(self._lifetime())

    @property
    def _max_age(self) -> int:
        # itsdangerous compares whole seconds.
        return max(1, int(self.lifetime_s))

    def _make_serializer(self, clock: Callable[[], float]) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(
            self._secret,
            salt=SALT,
            signer=_clocked_signer(clock),
            signer_kwargs={"digest_method": hashlib.sha256},
        )

    def token(self, suggestion_id: str, action: Action, *, issued_at: float | None = None) -> str:
        """A token for one suggestion and action. ``issued_at`` re-signs with an earlier issue time:
        the page's link to the other choice keeps the original's, so it never extends a link's life."""
        if not suggestion_id:
            raise LinkError("a suggestion id is required")
        if action not in _CODE:
            raise LinkError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
        serializer = self._serializer
        if issued_at is not None:
            fixed = float(issued_at)
            serializer = self._make_serializer(lambda: fixed)
        return cast(str, serializer.dumps([suggestion_id, _CODE[action]]))

    def url(self, suggestion_id: str, action: Action, *, issued_at: float | None = None) -> str:
        return f"{self.public_url}/r/{self.token(suggestion_id, action, issued_at=issued_at)}"

    def read(self, token: str) -> LinkClaim:
        """The claim of a token we signed. Raises :class:`LinkExpired` or :class:`LinkInvalid`."""
        if not _canonical_signature(token):
            raise LinkInvalid("the link is not valid")
        try:
            payload, signed_at = self._serializer.loads(token, max_age=self._max_age, return_timestamp=True)
        except SignatureExpired as e:
            try:
                payload = self._serializer.load_payload(e.payload or b"")
            except BadData as bad:
                raise LinkInvalid("the link is not valid") from bad
            claim = self._claim(payload, e.date_signed.timestamp() if e.date_signed else 0.0)
            if claim.issued_at > self._clock():
                raise LinkInvalid("the link was signed in the future") from e
            raise LinkExpired("the link has expired", claim) from e
        except BadData as e:
            raise LinkInvalid("the link is not valid") from e
        return self._claim(payload, signed_at.timestamp())

    @staticmethod
    def _claim(payload: Any, issued_at: float) -> LinkClaim:
        # Only reached for authentic tokens: a payload of another shape means another salt's
        # format under the same secret, which the salt already prevents; refuse it anyway.
        if (
            not isinstance(payload, list)
            or len(payload) != 2
            or not isinstance(payload[0], str)
            or not payload[0]
            or payload[1] not in _ACTION
        ):
            raise LinkInvalid("the link is not valid")
        return LinkClaim(suggestion_id=payload[0], action=_ACTION[payload[1]], issued_at=issued_at)


def _canonical_signature(token: str) -> bool:
    """True when the token's signature text is the one base64 encoding of its bytes."""
    _, sep, signature = token.rpartition(".")
    if not sep or not signature.isascii():
        return False
    try:
        decoded = base64_decode(signature)
    except BadData:
        return False
    return hmac.compare_digest(base64_encode(decoded), signature.encode("ascii"))
