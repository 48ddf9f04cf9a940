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


PLUGIN_TOKEN = "plugin-token-SECRET-4f1d2c3b5a697887"
GLPI_SECRET = "glpi-webhook-SECRET-0a1b2c3d4e5f60718293"
SECRETS_IN_URLS = {
    "token": PLUGIN_TOKEN,
    "wrong token": "wrong-token-SECRET-99887766554433",
    "crc_token": "crc-SECRET-aabbccddeeff00112233",
    "api_key": "apikey-SECRET-1234567890abcdef",
    "password": "pass-SECRET-qwerty123456",
    "confirmation token": "eyJzIjoiU0VDUkVUIn0.SECRET-link-token-0123456789",
    "confirmation token (POST)": "eyJzIjoiU0VDUkVUMiJ9.SECRET-link-token-9876543210",
}


def test_item5_no_secret_from_a_url_reaches_the_log(tmp_path):
    """Issue 8 item 5: gunicorn's access log printed ``?token=`` (the Redmine plugin token) and
    ``/r/<token>`` (confirmation links) in every request line. Run the real ``serve``, make requests
    that carry secrets in their URLs (accepted and refused ones), and grep everything it printed."""
    port = _free_port()
    env = {**os.environ, "HELPDESK_ASSIST_DATA_DIR": str(tmp_path / "var"),
           "HELPDESK_ASSIST_EMBEDDINGS__MODEL": "use-multilingual", "HELPDESK_ASSIST_LOG_LEVEL": "DEBUG",
           "HELPDESK_ASSIST_SECRET_KEY": "s" * 32, "HELPDESK_ASSIST_WORKER__EMBEDDED": "false",
           "HELPDESK_ASSIST_REDMINE__ENABLED": "true", "HELPDESK_ASSIST_REDMINE__URL": "http://127.0.0.1:9",
           "HELPDESK_ASSIST_REDMINE__API_KEY": "unused", "HELPDESK_ASSIST_REDMINE__PLUGIN_TOKEN": PLUGIN_TOKEN,
           "HELPDESK_ASSIST_GLPI__ENABLED": "true", "HELPDESK_ASSIST_GLPI__URL": "http://127.0.0.1:9/apirest.php",
           "HELPDESK_ASSIST_GLPI__USER_TOKEN": "unused", "HELPDESK_ASSIST_GLPI__WEBHOOK_SECRET": GLPI_SECRET}
    log_path = tmp_path / "serve.log"
    log = log_path.open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "plugin.cli", "serve", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                requests.get(base + "/healthz", timeout=5)
                break
            except requests.ConnectionError:
                time.sleep(1)
        plugin_body = {"payload": {"action": "opened", "issue": {"id": 1, "subject": "x"}}}
        statuses = [
            requests.post(f"{base}/webhooks/redmine?token={PLUGIN_TOKEN}", json=plugin_body, timeout=30).status_code,
            requests.post(f"{base}/webhooks/redmine?token={SECRETS_IN_URLS['wrong token']}", json=plugin_body,
                          timeout=30).status_code,
            requests.get(f"{base}/webhooks/glpi?crc_token={SECRETS_IN_URLS['crc_token']}", timeout=30).status_code,
            requests.get(f"{base}/healthz?api_key={SECRETS_IN_URLS['api_key']}&x=1", timeout=30).status_code,
            requests.post(f"{base}/api/ask?password={SECRETS_IN_URLS['password']}", json={"text": "x"},
                          timeout=30).status_code,
            requests.get(f"{base}/r/{SECRETS_IN_URLS['confirmation token']}", timeout=30).status_code,
            requests.post(f"{base}/r/{SECRETS_IN_URLS['confirmation token (POST)']}", timeout=30,
                          headers={"Referer": f"{base}/r/{SECRETS_IN_URLS['confirmation token (POST)']}"}).status_code,
        ]
        assert statuses[:3] == [202, 401, 403], statuses
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
    output = log_path.read_text(errors="replace")
    leaked = [name for name, value in SECRETS_IN_URLS.items() if value in output]
    assert not leaked, f"in the log: {leaked}\n" + output[-3000:]
    # The requests are logged (the redaction kept the lines, only the secrets went).
    assert output.count("/webhooks/redmine?token=[redacted]") == 2, output[-3000:]
    assert "/webhooks/glpi?crc_token=[redacted]" in output
    assert "/healthz?api_key=[redacted]&x=1" in output
    assert output.count("/r/[redacted]") >= 2
