"""The real app with GLPI and Redmine webhooks enabled (their APIs unreachable: nothing here reads a
ticket), a small knowledge base and a fast embedder: for tests of the web boundary."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

from plugin.settings import load_settings
from plugin.wiring import Services, build_services, ensure_knowledge_base
from rag.embeddings import HashingEmbedder

GLPI_SECRET = "glpi-webhook-secret-for-boundary-tests-0123"
REDMINE_SECRET = "redmine7-webhook-secret-for-boundary-tests"
PLUGIN_TOKEN = "plugin-token-for-boundary-tests-0123456789"
API_KEYS = ("api-key-one-for-tests-0123456789abcdef", "api-key-two-for-tests-0123456789abcdef")
#: Nothing listens there: a test that reached a helpdesk would fail loudly.
NOWHERE = "http://127.0.0.1:9"


def boundary_services(data_dir: Path, **overrides: Any) -> Services:
    settings = load_settings(
        env={},
        data_dir=str(data_dir),
        secret_key="k" * 32,
        api={"keys": list(API_KEYS)},
        glpi={"enabled": True, "url": NOWHERE + "/apirest.php", "user_token": "unused",
              "webhook_secret": GLPI_SECRET},
        redmine={"enabled": True, "url": NOWHERE, "api_key": "unused", "webhook_secret": REDMINE_SECRET,
                 "plugin_token": PLUGIN_TOKEN},
        **overrides,
    )
    services = build_services(settings, embedder=HashingEmbedder())
    ensure_knowledge_base(services)
    return services


def glpi_headers(body: bytes, secret: str = GLPI_SECRET, ts: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if ts is None else ts)
    return {"X-GLPI-signature": hmac.new(secret.encode(), body + stamp.encode(), hashlib.sha256).hexdigest(),
            "X-GLPI-timestamp": stamp}


def redmine_native_headers(body: bytes, secret: str = REDMINE_SECRET) -> dict[str, str]:
    return {"X-Redmine-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
            "Content-Type": "application/json"}


def auth(key: str = API_KEYS[0]) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def nested(depth: int, inner: Any = 1) -> bytes:
    """``[[[...inner...]]]`` nested ``depth`` deep, as bytes."""
    return b"[" * depth + json.dumps(inner).encode() + b"]" * depth
