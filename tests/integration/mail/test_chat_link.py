""""Send me a link" against the real Postfix + Dovecot: the chat mails a signed link, and the link restores
the conversations in another browser (GET shows a button, POST restores)."""

from __future__ import annotations

import email
import re
from email import policy
from pathlib import Path
from typing import Any

import pytest

from plugin.settings import load_settings
from plugin.web.app import create_app
from plugin.wiring import build_services, ensure_knowledge_base
from rag.embeddings import HashingEmbedder

from .conftest import MailServer

pytestmark = [pytest.mark.integration]


def csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert m
    return m.group(1)


def test_the_link_arrives_and_restores_the_conversations(mail_server: MailServer, tmp_path: Path) -> None:
    settings = load_settings(
        env={}, data_dir=str(tmp_path), secret_key="m" * 32, worker={"embedded": False},
        links={"public_url": "https://assist.example.test"},
        email={"enabled": True, "address": "helpdesk@example.test", "imap_host": mail_server.host,
               "imap_port": mail_server.imap_port, "imap_security": "none", "imap_username": "helpdesk@example.test",
               "imap_password": "helpdesk-pass", "smtp_host": mail_server.host, "smtp_port": mail_server.smtp_port,
               "smtp_security": "none", "forward_to": "intake@example.test"},
    )
    services = build_services(settings, embedder=HashingEmbedder())
    ensure_knowledge_base(services)
    app = create_app(settings, services=services)
    alice = app.test_client()
    page = alice.get("/chat", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    assert "Прислать ссылку" in page
    r = alice.post("/chat", data={"text": "Как настроить почту на телефоне", "csrf": csrf(page)})
    conv_id = r.headers["Location"].split("/chat/c/")[1].split("#")[0]
    r = alice.post("/chat/link", data={"email": "sink@example.test", "csrf": csrf(page)},
                   headers={"Accept-Language": "ru"})
    assert r.status_code == 200 and "ссылка уже в пути" in r.get_data(as_text=True)
    worker = services.new_worker()
    while worker.run_once():
        pass
    [raw] = mail_server.messages("sink")
    msg: Any = email.message_from_bytes(raw, policy=policy.default)
    assert msg["Subject"] == "Ваши разговоры с помощником ИТ-поддержки" and msg["Auto-Submitted"] == "auto-generated"
    url = re.search(r"https://assist\.example\.test(/chat/restore/\S+)", msg.get_content())
    assert url is not None
    bob = app.test_client()  # another browser of the same person
    assert bob.get(f"/chat/c/{conv_id}").status_code == 404
    page = bob.get(url.group(1)).get_data(as_text=True)
    assert bob.get(f"/chat/c/{conv_id}").status_code == 404  # the GET changed nothing
    assert bob.post(url.group(1), data={"csrf": csrf(page)}).status_code == 303
    assert bob.get(f"/chat/c/{conv_id}").status_code == 200
    assert conv_id in bob.get("/chat").get_data(as_text=True)
