"""Mail benchmark on the local Postfix + Dovecot (scripts/test_servers.sh): messages handled per minute
end to end (SMTP -> IMAP -> worker -> engine -> SMTP reply in the user's mailbox) and the time from
sending a message to our reply arriving. Prints numbers; asserts nothing.

Usage: PYTHONPATH=. .venv/bin/python bench/bench_mail.py [--messages 30]   Results: bench/results/mail.json
"""

from __future__ import annotations

import argparse
import json
import smtplib
import statistics
import subprocess
import tempfile
import time
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from imapclient import IMAPClient

from plugin.settings import load_settings
from plugin.wiring import build_services, ensure_knowledge_base
from rag.embeddings import USEEmbedder

ROOT = Path(__file__).resolve().parents[1]
SUBJECTS = ["Забыл пароль", "Outlook не отправляет письма", "Как сбросить пароль?", "Не могу войти в почту",
            "Письма висят в исходящих", "I forgot my password"]


def _sink_replies() -> dict[str, float]:
    """In-Reply-To of each reply in sink@ -> arrival time (now)."""
    with IMAPClient("127.0.0.1", 143, ssl=False, timeout=10) as c:
        c.login("sink@example.test", "sink-pass")
        c.select_folder("INBOX")
        uids = c.search(["ALL"])
        data = c.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (IN-REPLY-TO)]"]) if uids else {}
    out = {}
    for d in data.values():
        raw = next(v for k, v in d.items() if k.startswith(b"BODY"))
        value = raw.decode(errors="replace").partition(":")[2].strip()
        if value:
            out[value] = time.monotonic()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=30)
    n = ap.parse_args().messages
    for user in ("helpdesk@example.test", "intake@example.test", "sink@example.test"):
        subprocess.run(["doveadm", "-c", "/etc/dovecot/helpdesk-test.conf", "expunge", "-u", user, "mailbox", "*",
                        "all"], check=True, capture_output=True)
    settings = load_settings(
        env={}, data_dir=tempfile.mkdtemp(prefix="bench-mail-"), secret_key="k" * 32,
        email={"enabled": True, "address": "helpdesk@example.test", "imap_host": "127.0.0.1", "imap_port": 143,
               "imap_security": "none", "imap_username": "helpdesk@example.test", "imap_password": "helpdesk-pass",
               "smtp_host": "127.0.0.1", "smtp_port": 25, "smtp_security": "none", "forward_to": "intake@example.test",
               "poll_interval_s": 1, "idle": False, "max_replies_per_sender_per_day": 10_000},
        decision={"threshold": 0.3},
    )
    services = build_services(settings, embedder=USEEmbedder())
    ensure_knowledge_base(services)
    worker = services.new_worker()
    sent: dict[str, float] = {}
    t0 = time.monotonic()
    with smtplib.SMTP("127.0.0.1", 25, timeout=10) as s:
        for i in range(n):
            m = EmailMessage()
            m["From"] = f"user{i}@customer.example"
            m["To"] = "helpdesk@example.test"
            m["Subject"] = SUBJECTS[i % len(SUBJECTS)]
            m["Message-ID"] = make_msgid(domain="customer.example")
            m.set_content("Добрый день! " + SUBJECTS[i % len(SUBJECTS)] + ". Что делать?")
            sent[m["Message-ID"]] = time.monotonic()
            s.send_message(m)
    arrived: dict[str, float] = {}
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        worker.run_due_pollers()
        while worker.run_once():
            pass
        for k, v in _sink_replies().items():
            arrived.setdefault(k, v)
        forwarded = services.mail.conversations().get("forwarded", 0)
        if len(arrived) + forwarded >= n:
            break
        time.sleep(0.2)
    wall = time.monotonic() - t0
    lat = [arrived[k] - sent[k] for k in sent if k in arrived]
    result = {
        "messages": n, "answered": len(lat), "forwarded": services.mail.conversations().get("forwarded", 0),
        "wall_s": round(wall, 1), "handled_per_minute": round(n / wall * 60, 1),
        "send_to_reply_s": {"p50": round(statistics.median(lat), 2), "max": round(max(lat), 2)} if lat else None,
        "note": "one worker, polling every 1 s (IDLE off), extractive answers, USE encoder, 2 vCPU",
    }
    services.mail.mailbox.close()
    print(json.dumps(result, indent=2))
    (ROOT / "bench" / "results" / "mail.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
