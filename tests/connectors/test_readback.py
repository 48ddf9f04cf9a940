"""Issue 8 item 3: a write sent but not answered is told apart from one never sent, on real sockets
(the slow proxy of tests/fakes/slow_proxy.py in front of a small upstream or the fake GLPI), and
read back until its outcome is known."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from connectors.base import OutgoingMessage, TransientConnectorError, WriteOutcomeUnknown
from connectors.glpi import GLPIConnector
from connectors.glpi.client import GLPIClient
from connectors.readback import await_write
from connectors.redmine.client import RedmineClient
from tests.fakes.glpi_server import FakeGLPI
from tests.fakes.slow_proxy import SlowProxy

MARKER = "ha-0000000000c3"


class _Upstream:
    """A tiny HTTP server that answers 204 to everything and remembers the methods it received."""

    def __init__(self) -> None:
        self.received: list[str] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                upstream.received.append(self.command)
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_PUT = do_POST = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream() -> Iterator[_Upstream]:
    up = _Upstream()
    yield up
    up.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_item3_redmine_put_past_the_timeout_is_unknown_and_still_lands(upstream: _Upstream) -> None:
    with SlowProxy(upstream.url, slow_methods={"PUT"}, delay_s=1.0) as proxy:
        client = RedmineClient(proxy.url, "k" * 40, timeout_s=0.3)
        with pytest.raises(WriteOutcomeUnknown):
            client.put("/issues/7.json", {"issue": {"notes": "x"}})
        assert upstream.received == [], "not there yet when the client gave up"
        assert proxy.wait_idle(10)
        assert upstream.received == ["PUT"], "...but it landed afterwards"
        client.delete("/issues/7.json")  # other methods pass straight through
        assert proxy.held == 1


def test_item3_redmine_connection_reset_after_sending_is_unknown(upstream: _Upstream) -> None:
    with SlowProxy(upstream.url, slow_methods={"PUT"}, mode="reset") as proxy:
        client = RedmineClient(proxy.url, "k" * 40, timeout_s=5)
        with pytest.raises(WriteOutcomeUnknown):
            client.put("/issues/7.json", {"issue": {"notes": "x"}})
        assert upstream.received == ["PUT"]


def test_item3_redmine_refused_connection_and_slow_reads_are_plain_transient(upstream: _Upstream) -> None:
    refused = RedmineClient(f"http://127.0.0.1:{_closed_port()}", "k" * 40, timeout_s=1)
    with pytest.raises(TransientConnectorError) as info:
        refused.put("/issues/7.json", {"issue": {"notes": "x"}})
    assert not isinstance(info.value, WriteOutcomeUnknown), "never sent: safe to send again"
    with SlowProxy(upstream.url, slow_methods={"GET"}, delay_s=1.0) as proxy:
        with pytest.raises(TransientConnectorError) as info:
            RedmineClient(proxy.url, "k" * 40, timeout_s=0.3).get("/issues/7.json")
        assert not isinstance(info.value, WriteOutcomeUnknown), "a read changes nothing"


def test_item3_glpi_add_past_the_timeout_is_unknown() -> None:
    with FakeGLPI() as fake, SlowProxy(fake.web_url, slow_methods={"POST"}, delay_s=1.0) as proxy:
        tid = fake.create_ticket()
        client = GLPIClient(proxy.url + "/apirest.php", fake.bot_token, fake.app_token, timeout_s=0.3)
        with pytest.raises(WriteOutcomeUnknown):
            client.add("ITILFollowup", {"itemtype": "Ticket", "items_id": tid, "content": "<p>x</p>"})
        assert proxy.wait_idle(10)
        assert len(fake.followups(tid)) == 1
        refused = GLPIClient(f"http://127.0.0.1:{_closed_port()}/apirest.php", fake.bot_token, fake.app_token)
        refused._session_token = "anything"  # skip initSession: the add itself must be refused
        with pytest.raises(TransientConnectorError) as info:
            refused.add("ITILFollowup", {"itemtype": "Ticket", "items_id": tid, "content": "<p>y</p>"})
        assert not isinstance(info.value, WriteOutcomeUnknown)


@pytest.fixture
def slow_glpi() -> Iterator[tuple[FakeGLPI, SlowProxy, GLPIConnector]]:
    with FakeGLPI() as fake, SlowProxy(fake.web_url, slow_methods={"POST"}, delay_s=1.0) as proxy:
        conn = GLPIConnector(url=proxy.url + "/apirest.php", user_token=fake.bot_token, app_token=fake.app_token,
                             timeout_s=0.4, unknown_write_wait_s=10)
        yield fake, proxy, conn
        conn.close()


def test_item3_glpi_unanswered_follow_ups_are_found_not_added_twice(slow_glpi) -> None:
    fake, proxy, conn = slow_glpi
    tid = fake.create_ticket(requester=fake.requester_id)
    note = conn.post_comment(str(tid), OutgoingMessage(marker=MARKER, paragraphs=["agents only"]), private=True)
    assert note.is_private and note.marker == MARKER
    assert proxy.held == 1
    assert proxy.wait_idle(10)
    assert [f["is_private"] for f in fake.followups(tid)] == [1]


def test_item3_glpi_unanswered_close_and_hand_back_write_once(slow_glpi) -> None:
    fake, proxy, conn = slow_glpi
    closing = fake.create_ticket(requester=fake.requester_id)
    closed = conn.close_confirmed(str(closing), OutgoingMessage(marker=MARKER, paragraphs=["Thanks!"]))
    assert closed.state == "closed"
    assert len(fake.solutions(closing)) == 1 and len(fake.followups(closing)) == 1
    assert proxy.held == 2  # the solution and its approval, each answered late

    refusing = fake.create_ticket(requester=fake.requester_id)
    fake.add_solution(refusing, fake.bot_id)
    back = conn.hand_back(str(refusing), OutgoingMessage(marker=MARKER, paragraphs=["Did not help"]))
    assert back.state in ("new", "open")
    assert proxy.wait_idle(10)
    assert [f["is_private"] for f in fake.followups(refusing)] == [1]


def test_item3_await_write_checks_a_few_times_then_gives_the_error_back() -> None:
    slept: list[float] = []
    error = WriteOutcomeUnknown("no answer")
    with pytest.raises(WriteOutcomeUnknown) as info:
        await_write(lambda: None, error, wait_s=20, what="test", sleep=slept.append)
    assert info.value is error
    assert slept == [0.5, 1.0, 2.0, 4.0, 8.0, 4.5]
    answers = iter([None, TransientConnectorError("slow read"), "found"])

    def probe() -> str | None:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    slept.clear()
    assert await_write(probe, error, wait_s=20, what="test", sleep=slept.append) == "found"
    assert slept == [0.5, 1.0, 2.0]
