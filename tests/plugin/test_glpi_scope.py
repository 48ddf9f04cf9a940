"""Issue 8 item 7 for GLPI: ``glpi.entities`` holds on every path (webhook and polling), judged on the
re-fetched ticket, against the fake GLPI (tests/fakes/glpi_server.py)."""

from __future__ import annotations

import pytest

from plugin.settings import load_settings
from plugin.web.app import create_app
from plugin.wiring import build_services, ensure_knowledge_base
from tests.drain import drain
from tests.fakes.glpi_server import FakeGLPI

pytestmark = pytest.mark.slow

SECRET = "glpi-webhook-secret-scope-0123456789abcdef"
QUESTION = ("Забыл пароль", "<p>Как сбросить пароль от учетной записи? Не могу войти в Windows.</p>")


@pytest.fixture(scope="module")
def glpi():
    with FakeGLPI() as server:
        server.helpdesk = server.create_entity("IT helpdesk")  # type: ignore[attr-defined]
        server.hr = server.create_entity("HR")  # type: ignore[attr-defined]
        yield server


@pytest.fixture(scope="module")
def services(glpi, tmp_path_factory, use_embedder):
    settings = load_settings(
        env={},
        data_dir=str(tmp_path_factory.mktemp("var")),
        secret_key="k" * 32,
        links={"public_url": "https://ai.example.test"},
        decision={"threshold": 0.3},
        worker={"backoff_base_s": 0.05, "backoff_max_s": 0.1},
        glpi={"enabled": True, "url": glpi.url, "user_token": glpi.bot_token, "app_token": glpi.app_token,
              "webhook_secret": SECRET, "entities": [glpi.helpdesk]},
    )
    s = build_services(settings, embedder=use_embedder)
    ensure_knowledge_base(s)
    return s


@pytest.fixture(scope="module")
def client(services):
    return create_app(services.settings, services=services).test_client()


def _deliver(client, glpi, tid):
    headers, body = glpi.webhook_delivery("new", "Ticket", tid, SECRET)
    return client.post("/webhooks/glpi", data=body, headers=headers)


def test_item7_a_webhook_for_another_entity_is_not_answered(services, client, glpi):
    other = glpi.create_ticket(name=QUESTION[0], content=QUESTION[1], entity=glpi.hr)
    ours = glpi.create_ticket(name=QUESTION[0], content=QUESTION[1], entity=glpi.helpdesk)
    assert _deliver(client, glpi, other).status_code == 202
    assert _deliver(client, glpi, ours).status_code == 202
    drain(services.new_worker())
    assert glpi.followups(other) == [], "a ticket outside glpi.entities was answered"
    assert services.store.suggestions.for_ticket("glpi", str(other)) is None
    assert len(glpi.followups(ours)) == 2  # the control: public suggestion + private note


def test_item7_entity_is_judged_after_re_fetching(services, client, glpi):
    tid = glpi.create_ticket(name=QUESTION[0], content=QUESTION[1], entity=glpi.helpdesk)
    headers, body = glpi.webhook_delivery("new", "Ticket", tid, SECRET)  # says: IT helpdesk
    glpi.tickets[tid]["entities_id"] = glpi.hr  # moved before the worker re-reads it
    assert client.post("/webhooks/glpi", data=body, headers=headers).status_code == 202
    drain(services.new_worker())
    assert glpi.followups(tid) == []
    assert services.store.suggestions.for_ticket("glpi", str(tid)) is None


def test_item7_polling_does_not_answer_another_entity(services, glpi):
    connector = services.connectors["glpi"]
    _, since = connector.poll(None)
    glpi.advance(5)
    other = glpi.create_ticket(name=QUESTION[0], content=QUESTION[1], entity=glpi.hr)
    ours = glpi.create_ticket(name=QUESTION[0], content=QUESTION[1], entity=glpi.helpdesk)
    events, _ = connector.poll(since)
    assert {str(other), str(ours)} <= {e.ticket_id for e in events}  # GLPI lists both...
    for event in events:
        services.pipeline.enqueue_event(event)
    drain(services.new_worker())
    assert glpi.followups(other) == []  # ...and the re-fetched ticket decides
    assert len(glpi.followups(ours)) == 2
