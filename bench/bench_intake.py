"""Webhook intake and webhook-to-suggestion benchmark (prints numbers; asserts nothing).

1. intake: `helpdesk-assist serve` (gunicorn, one process, threads) on loopback with the GLPI
   connector enabled and the embedded worker off, so that only intake is measured: signed GLPI 11
   deliveries are POSTed from client threads; throughput and acknowledgement latency p50/p99.
2. end to end (needs the real Redmine of scripts/test_servers.sh): a requester files an issue, the
   redmine_webhook plugin's delivery is POSTed to /webhooks/redmine, and we wait until the
   suggestion (public note) and the agent note (private) are in the issue's journals.

Usage: PYTHONPATH=. .venv/bin/python bench/bench_intake.py [--requests 3000] [--clients 16] [--e2e 10]
Results: bench/results/intake.json
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
GLPI_SECRET = "bench-webhook-secret-0123456789abcdef"
PLUGIN_TOKEN = "bench-plugin-token-0123456789"
REDMINE = os.environ.get("REDMINE_URL", "http://127.0.0.1:3000")
ADMIN_KEY = os.environ.get("REDMINE_ADMIN_KEY", "a" * 40)
REQUESTER_KEY = os.environ.get("REDMINE_REQUESTER_KEY", "b" * 40)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(env_extra: dict[str, str], data_dir: Path, threads: int) -> tuple[subprocess.Popen, str, Path]:
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HELPDESK_ASSIST_DATA_DIR": str(data_dir),
        "HELPDESK_ASSIST_EMBEDDINGS__MODEL": "use-multilingual",
        "HELPDESK_ASSIST_SECRET_KEY": "bench-secret-key-0123456789abcdef",
        "HELPDESK_ASSIST_LOG_LEVEL": "WARNING",
        **env_extra,
    }
    log_path = data_dir / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "plugin.cli", "serve", "--port", str(port), "--threads", str(threads)],
        env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited: {log_path.read_text(errors='replace')[-2000:]}")
        try:
            if requests.get(base + "/healthz", timeout=30).ok:
                return proc, base, log_path
        except (requests.ConnectionError, requests.Timeout):  # the first request builds the app
            time.sleep(0.5)
    raise SystemExit("serve did not come up")


def _stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def glpi_delivery(ticket_id: int, ts: int) -> tuple[dict[str, str], bytes]:
    body = json.dumps(
        {
            "event": "new",
            "item": {
                "id": ticket_id, "name": f"Ticket {ticket_id}", "content": "<p>Не могу войти в почту</p>",
                "status": {"id": 1, "name": "New"}, "type": 1, "date_creation": "2026-11-24T10:00:00",
                "date_mod": "2026-11-24T10:00:00", "entity": {"id": 0, "name": "Root entity"},
                "request_type": {"id": 1, "name": "Helpdesk"}, "external_id": "",
            },
        },
        indent=4, ensure_ascii=False,
    ).encode()
    sig = hmac.new(GLPI_SECRET.encode(), body + str(ts).encode(), hashlib.sha256).hexdigest()
    return {"X-GLPI-signature": sig, "X-GLPI-timestamp": str(ts)}, body


def bench_intake(n: int, clients: int, threads: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-intake-"))
    proc, base, _ = _serve(
        {
            "HELPDESK_ASSIST_GLPI__ENABLED": "true",
            "HELPDESK_ASSIST_GLPI__URL": "http://127.0.0.1:9/apirest.php",
            "HELPDESK_ASSIST_GLPI__USER_TOKEN": "unused-for-intake",
            "HELPDESK_ASSIST_GLPI__WEBHOOK_SECRET": GLPI_SECRET,
            "HELPDESK_ASSIST_WORKER__EMBEDDED": "false",
        },
        tmp, threads,
    )
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    ts = int(time.time())
    counter = iter(range(1, n + 1))

    def client() -> None:
        s = requests.Session()
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            headers, body = glpi_delivery(i, ts)
            t0 = time.perf_counter()
            r = s.post(base + "/webhooks/glpi", data=body, headers=headers, timeout=30)
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

    try:
        # Warm-up (first requests pay imports and SQLite opening).
        for i in range(20):
            h, b = glpi_delivery(10_000_000 + i, ts)
            requests.post(base + "/webhooks/glpi", data=b, headers=h, timeout=30)
        t0 = time.perf_counter()
        pool = [threading.Thread(target=client) for _ in range(clients)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        wall = time.perf_counter() - t0
        # A replayed delivery is acknowledged and stored once.
        h, b = glpi_delivery(1, ts)
        replay = requests.post(base + "/webhooks/glpi", data=b, headers=h, timeout=30).json()
        # No api.keys here: serve wrote a local key, which the full /healthz needs (issue 8 item 9).
        key = (tmp / "api_key").read_text().strip()
        queue = requests.get(base + "/healthz", headers={"X-API-Key": key}, timeout=30).json()["queue"]
    finally:
        _stop(proc)
    return {
        "requests": n, "clients": clients, "server_threads": threads, "wall_s": round(wall, 2),
        "throughput_rps": round(n / wall, 1),
        "ack_latency_ms": {"p50": round(_pct(latencies, 0.5) * 1000, 1), "p99": round(_pct(latencies, 0.99) * 1000, 1),
                           "max": round(max(latencies) * 1000, 1)},
        "statuses": statuses, "stored": queue, "replay": replay,
    }


def bench_e2e(runs: int) -> dict:
    try:
        requests.get(REDMINE, timeout=3)
    except requests.ConnectionError:
        return {"skipped": f"no Redmine at {REDMINE}: sudo scripts/test_servers.sh up"}
    tmp = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    proc, base, _ = _serve(
        {
            "HELPDESK_ASSIST_REDMINE__ENABLED": "true",
            "HELPDESK_ASSIST_REDMINE__URL": REDMINE,
            "HELPDESK_ASSIST_REDMINE__API_KEY": ADMIN_KEY,
            "HELPDESK_ASSIST_REDMINE__PLUGIN_TOKEN": PLUGIN_TOKEN,
            "HELPDESK_ASSIST_DECISION__THRESHOLD": "0.3",
        },
        tmp, 4,
    )
    subjects = ["Забыл пароль от учетной записи", "Outlook не отправляет письма", "Как сбросить пароль?",
                "Не могу войти в почту, пароль не подходит", "Письма висят в исходящих"]
    times: list[float] = []
    public = 0
    try:
        for i in range(runs):
            issue = requests.post(
                f"{REDMINE}/issues.json", headers={"X-Redmine-API-Key": REQUESTER_KEY},
                json={"issue": {"project_id": "helpdesk", "subject": subjects[i % len(subjects)],
                                "description": "Помогите, пожалуйста."}}, timeout=30,
            ).json()["issue"]
            payload = {"payload": {"action": "opened", "url": f"{REDMINE}/issues/{issue['id']}", "issue": issue}}
            t0 = time.perf_counter()
            r = requests.post(f"{base}/webhooks/redmine?token={PLUGIN_TOKEN}", json=payload, timeout=30)
            assert r.status_code == 202, r.text
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                j = requests.get(f"{REDMINE}/issues/{issue['id']}.json?include=journals",
                                 headers={"X-Redmine-API-Key": ADMIN_KEY}, timeout=30).json()["issue"]["journals"]
                notes = [x for x in j if "ha-" in (x.get("notes") or "")]
                if any(x["private_notes"] for x in notes):
                    times.append(time.perf_counter() - t0)
                    public += any(not x["private_notes"] for x in notes)
                    break
                time.sleep(0.05)
    finally:
        _stop(proc)
    if not times:
        return {"runs": runs, "completed": 0}
    return {"runs": runs, "completed": len(times), "with_public_suggestion": public,
            "webhook_to_notes_s": {"p50": round(statistics.median(times), 2), "max": round(max(times), 2)}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--e2e", type=int, default=10)
    args = ap.parse_args()
    print("intake ...", flush=True)
    intake = bench_intake(args.requests, args.clients, args.threads)
    print(json.dumps(intake, indent=2), flush=True)
    print("webhook -> suggestion on the real Redmine ...", flush=True)
    e2e = bench_e2e(args.e2e)
    print(json.dumps(e2e, indent=2), flush=True)
    out = ROOT / "bench" / "results" / "intake.json"
    out.write_text(json.dumps({"intake": intake, "e2e_redmine": e2e, "cpu_count": os.cpu_count(),
                               "when": time.strftime("%Y-%m-%d %H:%M")}, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
