"""API keys for ``/api/*`` (issue 8 item 9): configured keys, or one generated locally on first start.

``/api/ask`` answers from the knowledge base, and for a knowledge base built from tickets that is
what employees wrote: it is not for anyone who can reach the port. Keys come from ``api.keys``
(several, so one can be replaced without downtime). With none configured, the first start writes a
random key to ``<data_dir>/api_key`` (mode 0600, never logged): the quick start reads it from there,
and nothing on a fresh install answers /api/* without it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path
from typing import Protocol

from plugin.settings import Settings

log = logging.getLogger(__name__)

LOCAL_KEY_FILE = "api_key"
BEARER = "bearer "
KEY_HEADER = "X-API-Key"


def local_key_path(settings: Settings) -> Path:
    return Path(settings.data_dir) / LOCAL_KEY_FILE


def ensure_local_key(path: Path) -> str:
    """The key in ``path``, created (random, mode 0600) when the file does not exist yet."""
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process (gunicorn worker, `serve`) created it first
        return _read_key(path)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key + "\n")
    log.warning("api_key_created: a key for /api/* was written to %s (send it as 'Authorization: Bearer <key>')",
                path)
    return key


def _read_key(path: Path) -> str:
    key = path.read_text(encoding="ascii").strip()
    if len(key) < 16:
        raise ValueError(f"{path} holds no usable API key (at least 16 characters): delete it to get a new one")
    return key


def accepted_keys(settings: Settings) -> list[str]:
    """The configured keys, or the local one (created on first use)."""
    configured = [k.get_secret_value() for k in settings.api.keys]
    return configured or [ensure_local_key(local_key_path(settings))]


class KeyChecker:
    """Constant-time check of a presented key against every accepted one.

    Keys are compared as SHA-256 digests: equal lengths, so neither a key's content nor its length
    shows in the timing; every key is compared (no early exit on the first match)."""

    def __init__(self, keys: list[str]):
        if not keys:
            raise ValueError("at least one API key is needed")
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys]

    def matches(self, presented: str) -> bool:
        digest = hashlib.sha256(presented.encode("utf-8", "replace")).digest()
        found = False
        for known in self._digests:
            found |= hmac.compare_digest(digest, known)
        return found


class _Headers(Protocol):
    def get(self, key: str) -> str | None: ...


def presented_key(headers: _Headers) -> str | None:
    """The key a request carries: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
    auth = headers.get("Authorization") or ""
    if auth[: len(BEARER)].lower() == BEARER:
        return auth[len(BEARER):].strip() or None
    return (headers.get(KEY_HEADER) or "").strip() or None
