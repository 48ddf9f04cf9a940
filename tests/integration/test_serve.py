"""`helpdesk-assist serve` as a person starts it: a real gunicorn process on loopback, first run included."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_first_run_imports_the_sample_and_answers(tmp_path):
    port = _free_port()
    env = {**os.environ, "HELPDESK_ASSIST_DATA_DIR": str(tmp_path / "var"),
           "HELPDESK_ASSIST_EMBEDDINGS__MODEL": "use-multilingual"}
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "plugin.cli", "serve", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                    health = r.json()
                    break
            except requests.ConnectionError:
                time.sleep(1)
        assert health is not None, (tmp_path / "serve.log").read_text(errors="replace")[-3000:]
        assert list(health) == ["status"]  # no key: nothing but ok/degraded (issue 8 item 9)
        # No api.keys configured: the first run wrote a local key, as the README's quick start uses it.
        key = (tmp_path / "var" / "api_key").read_text().strip()
        auth = {"Authorization": f"Bearer {key}"}
        with requests.get(f"http://127.0.0.1:{port}/healthz", headers=auth, timeout=30) as r:
            assert r.json()["index"]["entries"] == 188
        question = {"text": "Принтер не печатает, документы зависли в очереди"}
        with requests.post(f"http://127.0.0.1:{port}/api/ask", timeout=60, json=question) as r:
            assert r.status_code == 401
        with requests.post(f"http://127.0.0.1:{port}/api/ask", timeout=60, json=question, headers=auth) as r:
            body = r.json()
        assert r.status_code == 200
        assert body["category"]["levels"][0] == "Принтеры и сканеры"
        assert all("question" not in h for h in body["hits"])
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
    output = (tmp_path / "serve.log").read_bytes()
    assert b"WORKER TIMEOUT" not in output
    assert key.encode() not in output  # the key's path is printed, never the key
