"""The chat's hand-off to GLPI through the real app, inbox and worker, against the fake GLPI: the ticket's
requester is the person, the conversation is its description, the number shows in the conversation; and
while GLPI is down the person is told, nothing is lost, and the ticket appears once it is back."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plugin.settings import load_settings
from plugin.web.app import create_app
from plugin.wiring import Services, build_services, ensure_knowledge_base
from rag.embeddings import HashingEmbedder
from tests.fakes.glpi_server import FakeGLPI


@pytest.fixture
def fake() -> Iterator[FakeGLPI]:
    with FakeGLPI() as server:
        yield server


@pytest.fixture
def services(tmp_path: Path, fake: FakeGLPI) -> Services:
    settings = load_settings(
        env={}, data_dir=str(tmp_path), secret_key="g" * 32,
        worker={"embedded": False, "backoff_base_s": 0.05, "backoff_max_s": 0.05},
        glpi={"enabled": True, "url": fake.url, "user_token": fake.bot_token, "app_token": fake.app_token,
              "create_tickets": True, "timeout_s": 5, "poll": False},
    )
    services = build_services(settings, embedder=HashingEmbedder())
    ensure_knowledge_base(services)
    return services


def drain(services: Services) -> None:
    worker = services.new_worker()
    while worker.run_once():
        pass


def csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert m
    return m.group(1)


def start(client: Any) -> tuple[str, str]:
    token = csrf(client.get("/chat").get_data(as_text=True))
    r = client.post("/chat", data={"text": "Принтер <HP> не печатает & мигает", "csrf": token})
    return r.headers["Location"].split("/chat/c/")[1].split("#")[0], token


def test_handoff_to_glpi_sets_the_requester(services: Services, fake: FakeGLPI) -> None:
    client = create_app(services.settings, services=services).test_client()
    conv_id, token = start(client)
    r = client.post(f"/chat/c/{conv_id}/handoff", data={"login": "JDoe@example.org", "csrf": token})
    assert r.status_code == 303
    page = client.get(f"/chat/c/{conv_id}", headers={"Accept-Language": "ru"}).get_data(as_text=True)
    assert "Заявка будет создана" in page
    drain(services)
    conv = services.store.chat.get_any(conv_id)
    assert conv is not None and conv.handoff_state == "created"
    tid = int(conv.ticket_id)
    assert [(r["users_id"], r["type"]) for r in fake.requesters(tid)] == [(fake.requester_id, 1)]
    stored = fake.ticket(tid)
    assert stored["name"] == "Принтер <HP> не печатает & мигает"
    assert "Принтер &lt;HP&gt; не печатает &amp; мигает" in stored["content"]
    page = client.get(f"/chat/c/{conv_id}").get_data(as_text=True)
    assert f"GLPI #{tid}" in page and f"ticket.form.php?id={tid}" in page
    # A second click changes nothing: one ticket.
    client.post(f"/chat/c/{conv_id}/handoff", data={"login": "jdoe", "csrf": token})
    drain(services)
    assert len([t for t in fake.tickets.values() if "Принтер" in t["name"]]) == 1


def test_handoff_while_glpi_is_down_is_created_later(services: Services, fake: FakeGLPI) -> None:
    client = create_app(services.settings, services=services).test_client()
    conv_id, token = start(client)
    fake.outage = 503
    r = client.post(f"/chat/c/{conv_id}/handoff", data={"login": "jdoe", "csrf": token})
    assert r.status_code == 303  # accepted: the login is checked when the ticket is created
    drain(services)
    conv = services.store.chat.get_any(conv_id)
    assert conv is not None and conv.handoff_state == "pending"
    [item] = [i for i in services.store.inbox.items("pending") if i.kind == "chat_handoff"]
    assert "503" in (item.last_error or "") or "down" in (item.last_error or "")
    fake.outage = None
    time.sleep(0.1)  # the retry's backoff (0.05 s here)
    drain(services)
    conv = services.store.chat.get_any(conv_id)
    assert conv is not None and conv.handoff_state == "created"
    assert [r["users_id"] for r in fake.requesters(int(conv.ticket_id))] == [fake.requester_id]
