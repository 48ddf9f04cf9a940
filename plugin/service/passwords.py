"""Local accounts' passwords: Argon2id hashes (argon2-cffi), verified with "rehash needed".

Why argon2-cffi and not werkzeug.security's scrypt, which Flask already brings: Argon2id is the first
choice of OWASP's password storage guidance and of RFC 9106; argon2-cffi is the maintained binding of the
reference C implementation (wheels for every platform); and it answers "is this hash weaker than today's
parameters?" itself (``check_needs_rehash``), which werkzeug does not: we would have to parse its
``scrypt:32768:8:1$...`` strings ourselves to upgrade old hashes.

The hash string carries its own parameters (``$argon2id$v=19$m=65536,t=3,p=4$salt$hash``), so a hash
made with older, cheaper parameters still verifies, and :func:`verify_password` says when to store a new
one. The defaults are argon2-cffi's: RFC 9106's second recommended option (64 MiB, 3 passes, 4 lanes).
``bench/bench_passwords.py`` prints what one hash and one check cost on a machine.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import NamedTuple

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

log = logging.getLogger(__name__)

#: The parameters new hashes get. A caller may pass a cheaper hasher in tests, or a dearer one.
DEFAULT_HASHER = PasswordHasher()


class PasswordCheck(NamedTuple):
    ok: bool
    #: The password is right but its stored hash uses weaker parameters than ``hasher``'s: store
    #: ``hash_password(password)`` in its place now that the password is known.
    needs_rehash: bool = False


def hash_password(password: str, *, hasher: PasswordHasher = DEFAULT_HASHER) -> str:
    """An Argon2id hash of ``password`` with a fresh random salt (never the same string twice)."""
    if not password:
        raise ValueError("an empty password cannot be set")
    return hasher.hash(password)


@lru_cache(maxsize=4)
def _dummy_hash(hasher: PasswordHasher) -> str:
    return hasher.hash("no account has this password")


def verify_password(stored: str | None, password: str, *, hasher: PasswordHasher = DEFAULT_HASHER) -> PasswordCheck:
    """Is ``password`` the one ``stored`` was made from? Never raises on a wrong or broken hash.

    ``stored=None`` (no such account) still spends the time of one verification, so that the answer
    time does not tell which logins exist.
    """
    if stored is None:
        _spend(hasher)
        return PasswordCheck(ok=False)
    if not password:
        _spend(hasher)
        return PasswordCheck(ok=False)
    try:
        hasher.verify(stored, password)
    except VerifyMismatchError:
        return PasswordCheck(ok=False)
    except InvalidHashError:
        # A damaged or foreign row: refuse, and say so to the admin (the hash itself is not logged).
        log.warning("password_hash_invalid: the stored hash is not an Argon2 hash; reset this account's password")
        _spend(hasher)
        return PasswordCheck(ok=False)
    except VerificationError as e:
        log.warning("password_verify_failed: %s", e)
        return PasswordCheck(ok=False)
    return PasswordCheck(ok=True, needs_rehash=hasher.check_needs_rehash(stored))


def _spend(hasher: PasswordHasher) -> None:
    try:
        hasher.verify(_dummy_hash(hasher), "not the password")
    except VerificationError:
        pass
