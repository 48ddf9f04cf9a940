"""The whole loop for GLPI, through the real app (webhooks, worker, confirmation pages) against the
fake GLPI of tests/fakes/glpi_server.py (GLPI itself cannot be installed here; the fake enforces
what GLPI's source says GLPI enforces: sessions, App-Token, rights, follow-up privacy, the
solution and approval life cycle)."""

from __future__ import annotations

import hashlib
import hmac
import re
import time

import pytest

from plugin.settings import load_settings
from plugin.web.app import create_app
from plugin.wiring import build_services, ensure_knowledge_base
from tests.drain import drain
from tests.fakes.glpi_server import AUTOCLOSE_NEVER, TECHNICIAN, FakeGLPI

pytestmark = pytest.mark.slow

SECRET = "glpi-webhook-secret-0123456789abcdefghij"
HREF_RE = re.compile(r'href="https://ai\.example\.test(/r/[A-Za-z0-9_.\-]+)"')


@pytest.fixture(scope="module")
def glpi():
    with FakeGLPI() as server:
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
              "webhook_secret": SECRET},
    )
    s = build_services(settings, embedder=use_embedder)
    ensure_knowledge_base(s)
    return s


@pytest.fixture(scope="module")
def client(services):
    return create_app(services.settings, services=services).test_client()


def _drain(worker, timeout: float = 30.0) -> None:
    drain(worker, timeout)


def _deliver(client, glpi, event, itemtype, ticket_id, secret=SECRET):
    headers, body = glpi.webhook_delivery(event, itemtype, ticket_id, secret)
    return client.post("/webhooks/glpi", data=body, headers=headers)


def _new_ticket(glpi, name, content):
    return glpi.create_ticket(name=name, content=f"<p>{content}</p>")


def test_crc_challenge_is_answered(client, glpi):
    token, expected = glpi.cra_challenge(SECRET)
    r = client.get(f"/webhooks/glpi?crc_token={token}")
    assert r.status_code == 200
    assert r.get_data(as_text=True) == expected


def test_item1_the_challenge_cannot_sign_a_forged_delivery(services, client, glpi):
    """Issue 8 item 1: the GET challenge answered HMAC(secret, X) for any X, which is a delivery's
    signature when X = body + timestamp. Now only GLPI's own token is answered; the attack stores nothing."""
    tid = _new_ticket(glpi, "Забыл пароль", "Как сбросить пароль от учетной записи?")
    _, body = glpi.webhook_delivery("new", "Ticket", tid, SECRET)
    ts = str(int(time.time()))
    before = services.store.inbox.counts()
    r = client.get("/webhooks/glpi", query_string={"crc_token": (body + ts.encode()).decode()})
    assert r.status_code == 403
    assert r.get_json() == {"error": "Forbidden", "detail": "challenge refused"}
    forged = r.get_data(as_text=True).strip()  # what an attacker would send as the signature
    r = client.post("/webhooks/glpi", data=body, headers={"X-GLPI-signature": forged, "X-GLPI-timestamp": ts})
    assert r.status_code == 401
    assert services.store.inbox.counts() == before
    # Any other caller-chosen token: the same 403, whatever its length or content; no signature anywhere.
    for other in ("abc", "0" * 64, glpi.cra_challenge("another-secret")[0], glpi.cra_challenge(SECRET)[1]):
        r = client.get("/webhooks/glpi", query_string={"crc_token": other})
        assert (r.status_code, r.get_json()["detail"]) == (403, "challenge refused")
        assert hmac.new(SECRET.encode(), other.encode(), hashlib.sha256).hexdigest() not in r.get_data(as_text=True)


def test_forged_delivery_is_refused_and_nothing_is_stored(services, client, glpi):
    tid = _new_ticket(glpi, "Забыл пароль", "Как сбросить пароль от учетной записи?")
    before = services.store.inbox.counts()
    assert _deliver(client, glpi, "new", "Ticket", tid, secret="not-the-secret-xxxxxxxxxxxxxxxxxxxxxxx").status_code == 401
    headers, body = glpi.webhook_delivery("new", "Ticket", tid, SECRET)
    del headers["X-GLPI-signature"]
    assert client.post("/webhooks/glpi", data=body, headers=headers).status_code == 400
    assert client.post("/webhooks/glpi", data=b"{oops", headers=glpi.webhook_delivery(
        "new", "Ticket", tid, SECRET)[0]).status_code in (400, 401)
    assert services.store.inbox.counts() == before


def test_new_ticket_suggestion_then_solved_closes_with_the_solution_approved(services, client, glpi):
    tid = _new_ticket(glpi, "Забыл пароль", "Как сбросить пароль от учетной записи? Не могу войти в Windows.")
    assert _deliver(client, glpi, "new", "Ticket", tid).status_code == 202
    assert _deliver(client, glpi, "new", "Ticket", tid).json["duplicates"] == 1
    _drain(services.new_worker())

    as_requester = glpi.followups(tid, as_user=glpi.requester_id)
    everything = glpi.followups(tid)
    assert len(as_requester) == 1 and as_requester[0]["is_private"] == 0
    assert sorted(f["is_private"] for f in everything) == [0, 1]
    public = as_requester[0]["content"]
    assert "password.example.ru" in public
    solved_path, _ = HREF_RE.findall(public)

    assert client.get(solved_path).status_code == 200  # a link scanner: nothing changes
    _drain(services.new_worker())
    assert glpi.ticket(tid)["status"] == 1

    assert client.post(solved_path).status_code == 200
    _drain(services.new_worker())
    assert glpi.ticket(tid)["status"] == 6
    (solution,) = glpi.solutions(tid)
    assert solution["status"] == 3  # ACCEPTED
    # Replayed "update" events for our own writes change nothing more.
    assert _deliver(client, glpi, "update", "Ticket", tid).status_code == 202
    _drain(services.new_worker())
    assert len(glpi.solutions(tid)) == 1


def test_link_clicked_after_an_agent_closed_the_ticket_records_nothing(services, client, glpi):
    """Issue 8 item 10: the page says the ticket is closed; nothing is recorded, applied or learned."""
    tid = _new_ticket(glpi, "Забыл пароль", "Как сбросить пароль от учетной записи? Не могу войти в Windows.")
    assert _deliver(client, glpi, "new", "Ticket", tid).status_code == 202
    _drain(services.new_worker())
    (public,) = glpi.followups(tid, as_user=glpi.requester_id)
    solved_path, not_solved_path = HREF_RE.findall(public["content"])
    agent = glpi.add_user("closer", TECHNICIAN)
    glpi.autoclose_delay = 0  # the agent's solution closes the ticket at once
    try:
        glpi.add_solution(tid, agent, "<p>Сбросил пароль, проверьте.</p>")
    finally:
        glpi.autoclose_delay = AUTOCLOSE_NEVER
    assert glpi.ticket(tid)["status"] == 6
    learned = services.engine.store.learned_counts()

    page = client.get(solved_path)
    assert page.status_code == 200 and "Обращение уже закрыто" in page.get_data(as_text=True)
    assert client.post(solved_path).status_code == 409
    assert client.post(not_solved_path, data={"reason": "other"}).status_code == 409
    _drain(services.new_worker())

    assert services.store.suggestions.for_ticket("glpi", str(tid)).outcome is None
    assert services.engine.store.learned_counts() == learned
    assert glpi.ticket(tid)["status"] == 6 and len(glpi.solutions(tid)) == 1


def test_not_solved_leaves_the_ticket_with_agents_and_the_reason_private(services, client, glpi):
    tid = _new_ticket(glpi, "Outlook не отправляет письма", "Письма висят в исходящих, что делать?")
    assert _deliver(client, glpi, "new", "Ticket", tid).status_code == 202
    _drain(services.new_worker())
    public = [f for f in glpi.followups(tid) if not f["is_private"]]
    assert public
    _, not_solved_path = HREF_RE.findall(public[0]["content"])
    assert client.post(not_solved_path, data={"reason": "not_related", "comment": "<b>Ошибка 0x800CCC0F</b>"}).status_code == 200
    _drain(services.new_worker())
    assert glpi.ticket(tid)["status"] in (1, 2)
    notes = [f for f in glpi.followups(tid) if f["is_private"] and "0x800CCC0F" in f["content"]]
    assert len(notes) == 1
    assert "<b>" not in notes[0]["content"], "user text is escaped in what we post"
    assert all("0x800CCC0F" not in f["content"] for f in glpi.followups(tid, as_user=glpi.requester_id))


def test_ticket_written_by_an_agent_gets_nothing(services, client, glpi):
    tid = glpi.create_ticket(name="Забыл пароль", content="<p>Сбросить пароль пользователю</p>", writer=glpi.bot_id)
    assert _deliver(client, glpi, "new", "Ticket", tid).status_code == 202
    _drain(services.new_worker())
    assert glpi.followups(tid) == []
    assert services.store.suggestions.history("glpi", str(tid))[-1][0] == "skipped"


def test_requester_approving_an_agent_solution_is_recorded_but_not_credited(services, client, glpi):
    tid = _new_ticket(glpi, "Забыл пароль", "Как поменять пароль от учетной записи?")
    _deliver(client, glpi, "new", "Ticket", tid)
    _drain(services.new_worker())
    glpi.add_solution(tid, glpi.bot_id, "<p>Сбросил вам пароль, временный в SMS.</p>")
    glpi.approve_solution(tid, glpi.requester_id)
    assert _deliver(client, glpi, "update", "Ticket", tid).status_code == 202
    _drain(services.new_worker())
    s = services.store.suggestions.for_ticket("glpi", str(tid))
    assert s.outcome == "solved" and s.outcome_via == "helpdesk"
    assert s.outcome_reason == "agent_involved", "an agent's solution says nothing about our suggestion"
