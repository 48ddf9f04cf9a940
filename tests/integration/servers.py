"""Finding the real servers that ``scripts/test_servers.sh`` starts (Redmine, Dovecot + Postfix).

Tests that need one call :func:`require_server`. When the server does not answer, the test is
skipped with the command that starts it, unless ``HELPDESK_TEST_REQUIRE_SERVERS=1`` (set by
``.ci/run``): then it fails, so that CI can never pass by skipping its real-server tests.
"""

from __future__ import annotations

import os
import socket

import pytest

REQUIRE_ENV = "HELPDESK_TEST_REQUIRE_SERVERS"


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_server(what: str, host: str, port: int) -> None:
    if reachable(host, port):
        return
    message = f"{what} is not running on {host}:{port}; start it with: sudo scripts/test_servers.sh up"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
