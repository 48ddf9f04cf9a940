"""Issue 8 item 4: a helpdesk outage through the real app, pipeline and worker, against the fake GLPI
(tests/fakes/glpi_server.py, its ``outage`` knob) on a fake clock: 30 minutes of HTTP 503 lose
nothing, health says which helpdesk is unreachable and since when, and a poll revives an event the
worker gave up on."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from plugin.cli import main
from plugin.settings import load_settings
from plugin.web.app import create_app
from plugin.wiring import build_services, ensure_knowledge_base
from tests.drain import drain
from tests.fakes.glpi_server import FakeGLPI
from tests.plugin.test_state import FakeClock

pytestmark = pytest.mark.slow

SECRET = "glpi-webhook-secret-0123456789abcdefghij"
TICKETS = [
    ("Забыл пароль", "Как сбросить пароль от учетной записи? Не могу войти в Windows."),
    ("Outlook не отправляет письма", "Письма висят в исходящих, что делать?"),
    ("Не работает VPN", "Не могу подключиться к VPN из дома."),
]


@pytest.fixture
def glpi():
    with FakeGLPI() as server:
        yield server


def _services(fake: FakeGLPI, tmp_path, use_embedder, clock, **over):
    settings = load_settings(
        env={},
        data_dir=str(tmp_path / "var"),
        secret_key="k" * 32,
        links={"public_url": "https://ai.example.test"},
        decision={"threshold": 0.3},
        glpi={"enabled": True, "url": fake.url, "user_token": fake.bot_token, "app_token": fake.app_token,
              "webhook_secret": SECRET, **over.pop("glpi", {})},
        **over,
    )
    s = build_services(settings, embedder=use_embedder, clock=clock)
    ensure_knowledge_base(s)
    return s


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _run_until(worker, clock: FakeClock, until: float) -> int:
    """Run the worker on the fake clock until ``until``, jumping to each retry as it falls due."""
    runs = 0
    while clock.now < until:
        while worker.run_once():
            runs += 1
        pending = worker.store.inbox.items("pending", limit=1000)
        due = min((i.available_at for i in pending), default=until)
        clock.now = min(max(due, clock.now + 0.001), until)
    return runs


def test_item4_a_30_minute_outage_loses_nothing_and_health_says_since_when(glpi, tmp_path, use_embedder):
    clock = FakeClock(time.time())
    services = _services(glpi, tmp_path, use_embedder, clock)  # worker settings: the defaults
    client = create_app(services.settings, services=services).test_client()
    # The full /healthz needs an API key (issue 8 item 9): none configured, so the local one.
    client.environ_base["HTTP_X_API_KEY"] = (tmp_path / "var" / "api_key").read_text().strip()
    tickets = [glpi.create_ticket(name=n, content=f"<p>{c}</p>", requester=glpi.requester_id) for n, c in TICKETS]

    glpi.outage = 503
    started = clock.now
    for tid in tickets:
        headers, body = glpi.webhook_delivery("new", "Ticket", tid, SECRET)
        assert client.post("/webhooks/glpi", data=body, headers=headers).status_code == 202
    worker = services.new_worker()
    attempts = _run_until(worker, clock, started + 30 * 60)
    assert attempts > 3 * 8, "more attempts than the old max_attempts bound"
    assert services.store.inbox.counts()["dead"] == 0, "nothing given up during the outage"

    health = client.get("/healthz").json
    assert health["status"] == "degraded"
    glpi_health = health["connections"]["glpi"]
    assert glpi_health["state"] == "unreachable"
    assert glpi_health["since"] == _iso(started)
    assert glpi_health["for_s"] >= 29 * 60
    assert "503" in glpi_health["last_error"]
    assert glpi.bot_token not in str(health)

    # `helpdesk-assist status` in another process reads the same state file.
    env = {"HELPDESK_ASSIST_DATA_DIR": str(tmp_path / "var"), "HELPDESK_ASSIST_SECRET_KEY": "k" * 32,
           "HELPDESK_ASSIST_GLPI__ENABLED": "true", "HELPDESK_ASSIST_GLPI__URL": glpi.url,
           "HELPDESK_ASSIST_GLPI__USER_TOKEN": glpi.bot_token, "HELPDESK_ASSIST_EMBEDDINGS__MODEL": "use-multilingual",
           "HELPDESK_ASSIST_ADMIN_LANGUAGE": "en"}
    r = CliRunner().invoke(main, ["status"], env=env, catch_exceptions=False)
    assert r.exit_code == 0
    assert f"glpi:       UNREACHABLE since {_iso(started)}" in r.stdout

    glpi.outage = None
    # The capped backoff (backoff_max_s 900 s, +/-20 % jitter: at most 18 min) brings every item back.
    _run_until(worker, clock, clock.now + 19 * 60)
    drain(worker, 30)
    assert services.store.inbox.counts() == {"pending": 0, "leased": 0, "done": 3, "dead": 0, "discarded": 0}
    for tid in tickets:
        assert sorted(f["is_private"] for f in glpi.followups(tid)) == [0, 1], f"ticket {tid}: suggestion + note"
    assert client.get("/healthz").json["connections"]["glpi"] == {"state": "ok"}


def test_item4_a_poll_revives_an_event_the_worker_gave_up_on(glpi, tmp_path, use_embedder):
    clock = FakeClock(time.time())
    services = _services(glpi, tmp_path, use_embedder, clock, worker={"retry_for_h": 0.1},
                         glpi={"poll": True, "poll_interval_s": 60})
    tid = glpi.create_ticket(name=TICKETS[0][0], content=f"<p>{TICKETS[0][1]}</p>", requester=glpi.requester_id)
    worker = services.new_worker()
    worker.clock = clock  # the poll schedule on the fake clock too
    worker.run_due_pollers()  # first run: only the watermark
    clock.advance(60)
    assert worker.run_due_pollers() == 1  # the overlap re-reads the newest ticket: one event

    glpi.outage = 503
    _run_until(worker, clock, clock.now + 0.1 * 3600 + 15 * 60)
    (dead,) = services.store.inbox.items("dead")
    assert dead.gave_up and dead.last_error.startswith("gave up after")
    assert glpi.followups(tid) == []

    glpi.outage = None
    clock.advance(60)
    worker.run_due_pollers()  # the same ticket, the same delivery key: revived, not a duplicate
    drain(worker, 30)
    assert sorted(f["is_private"] for f in glpi.followups(tid)) == [0, 1]
    assert services.store.inbox.counts()["dead"] == 0
