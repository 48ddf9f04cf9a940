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
        assert health["index"]["entries"] == 188
        with requests.post(f"http://127.0.0.1:{port}/api/ask", timeout=60,
                           json={"text": "Принтер не печатает, документы зависли в очереди"}) as r:
            body = r.json()
        assert r.status_code == 200
        assert body["category"]["levels"][0] == "Принтеры и сканеры"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
    assert b"WORKER TIMEOUT" not in (tmp_path / "serve.log").read_bytes()
