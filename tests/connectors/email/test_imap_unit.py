"""Mailbox without a server: network failures are transient. (The real server: tests/integration/mail.)"""

from __future__ import annotations

import socket

import pytest

from connectors.base import TransientConnectorError
from connectors.email.imap import Mailbox


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_is_transient():
    box = Mailbox("127.0.0.1", closed_port(), "none", "u", "secret-pw", timeout_s=2)
    with pytest.raises(TransientConnectorError) as info:
        box.fetch_new(0)
    assert "secret-pw" not in str(info.value)


def test_server_that_hangs_up_is_transient():
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        box = Mailbox("127.0.0.1", port, "none", "u", "p", timeout_s=1)
        # the listener accepts the TCP connection but never greets: imapclient times out
        with pytest.raises(TransientConnectorError):
            box.connect()
