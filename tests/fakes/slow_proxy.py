"""A slow helpdesk: a threaded HTTP proxy on 127.0.0.1 that holds writes past the client's timeout.

Put it in front of the real Redmine (or the fake GLPI) to reproduce what a slow helpdesk does to a
client: the write (``PUT`` for Redmine, ``POST`` for GLPI by default) is read in full, held
``delay_s`` seconds, and only then forwarded, so that the client has timed out and its retry can
read the ticket *before* the first write lands; the upstream's answer is then sent to whoever is
still listening (nobody). Other requests pass straight through. ``mode="reset"`` forwards at once
and resets the client's connection instead of answering (a write applied, the answer lost).

Used by tests/integration/test_slow_writes.py, tests/plugin/test_glpi_slow_writes.py and
bench/bench_reliability.py. Counts what it did (:attr:`SlowProxy.held`, :attr:`SlowProxy.forwarded`)
and lets a test wait until every held write reached the upstream (:meth:`SlowProxy.wait_idle`).
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
from collections.abc import Collection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import urlsplit

#: Hop-by-hop headers (RFC 9110 7.6.1) and the ones the proxy sets itself.
_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "host",
        "content-length"}


class SlowProxy:
    def __init__(
        self,
        upstream: str,
        *,
        slow_methods: Collection[str] = ("PUT",),
        delay_s: float = 2.0,
        mode: Literal["delay", "reset"] = "delay",
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the proxy forwards to a plain http:// upstream, not {upstream!r}")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self.slow_methods = {m.upper() for m in slow_methods}
        self.delay_s = delay_s
        self.mode = mode
        #: Writes held (or reset) so far, and every request forwarded (method, path, upstream status).
        self.held = 0
        self.forwarded: list[tuple[str, str, int]] = []
        self._in_flight = 0
        self._lock = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> SlowProxy:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="slow-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.wait_idle(self.delay_s + 30)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> SlowProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start the proxy first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait until no request is held or being forwarded (every held write reached the upstream)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    # -- one request ---------------------------------------------------------------------------------
    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1
            self._lock.notify_all()

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list[Any], bytes]:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=120)
        try:
            out = {k: v for k, v in headers.items() if k.lower() not in _HOP}
            out["Host"] = f"{self.upstream_host}:{self.upstream_port}"
            out["Connection"] = "close"
            conn.request(method, path, body=body or None, headers=out)
            resp = conn.getresponse()
            data = resp.read()
            with self._lock:
                self.forwarded.append((method, path, resp.status))
            return resp.status, [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP], data
        finally:
            conn.close()


class _Handler(BaseHTTPRequestHandler):
    owner: SlowProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _relay(self) -> None:
        proxy = self.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k: v for k, v in self.headers.items()}
        slow = self.command.upper() in proxy.slow_methods
        proxy._enter()
        try:
            if slow and proxy.mode == "delay":
                with proxy._lock:
                    proxy.held += 1
                time.sleep(proxy.delay_s)
            status, resp_headers, data = proxy.forward(self.command, self.path, headers, body)
            if slow and proxy.mode == "reset":
                with proxy._lock:
                    proxy.held += 1
                # RST instead of an answer: the write was applied, the client never learns it.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                return
        finally:
            proxy._leave()
        try:
            self.send_response(status)
            for k, v in resp_headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up long ago: that is the point
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay  # BaseHTTPRequestHandler dispatches on these names
