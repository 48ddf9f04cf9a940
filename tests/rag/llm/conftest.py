"""Fixtures for the LLM tests: a tiny real Qwen2 model, a scripted OpenAI-compatible server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.rag.llm.tiny_qwen import build_tiny_qwen


@pytest.fixture(scope="session")
def tiny_qwen_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2 chat model with a locally trained tokenizer, built once per session."""
    started = time.monotonic()
    path = build_tiny_qwen(tmp_path_factory.mktemp("tiny-qwen"), seed=0)
    print(f"\ntiny Qwen built in {time.monotonic() - started:.2f} s at {path}")
    return path


def closed_port() -> int:
    """A loopback port with nothing listening on it (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Reply:
    status: int = 200
    #: A dict is sent as JSON; bytes and str as they are.
    body: dict[str, Any] | bytes | str = b""
    delay_s: float = 0.0
    content_type: str = "application/json"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def chat_reply(content: str | None, **extra: Any) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` object with one choice."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": "qwen-test",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        **extra,
    }


@dataclass
class ScriptedServer:
    """An OpenAI-compatible server (and a stand-in hub for HEAD probes) on 127.0.0.1.

    Answers with the queued replies in order and records every request.
    """

    url: str
    replies: list[Reply] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def reply(self, *replies: Reply) -> None:
        self.replies.extend(replies)


@pytest.fixture
def openai_server() -> Iterator[ScriptedServer]:
    server_state: ScriptedServer | None = None

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            assert server_state is not None
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            server_state.requests.append(
                Recorded("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            reply = server_state.replies.pop(0) if server_state.replies else Reply(500, b"no scripted reply")
            if reply.delay_s:
                server_state.stop.wait(reply.delay_s)
            payload = reply.body
            data = (
                json.dumps(payload).encode()
                if isinstance(payload, dict)
                else payload.encode()
                if isinstance(payload, str)
                else payload
            )
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up (timeout tests)

        def do_HEAD(self) -> None:
            """A hub probe: answer with the next reply's status, no body."""
            assert server_state is not None
            server_state.requests.append(
                Recorded("HEAD", self.path, {k.lower(): v for k, v in self.headers.items()}, b"")
            )
            reply = server_state.replies.pop(0) if server_state.replies else Reply(404)
            self.send_response(reply.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    host, port = httpd.server_address[:2]
    server_state = ScriptedServer(url=f"http://{host!s}:{port}/v1")
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="scripted-openai", daemon=True
    )
    thread.start()
    try:
        yield server_state
    finally:
        server_state.stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
