"""The whole loop against the real Redmine of scripts/test_servers.sh.

A requester files an issue -> the redmine_webhook plugin's delivery reaches /webhooks/redmine ->
the worker posts the suggestion as a public note and the agent draft as a private note (checked as
the requester and as the admin see them) -> the confirm link's POST closes the issue. Another
issue's "not solved" leaves it open with the reason in a private note. A worker that dies between
posting and recording does not produce a second suggestion. Polling finds issues without webhooks.
"""

from __future__ import annotations

import re
import time

import pytest
import requests

from plugin.i18n import words
from plugin.settings import load_settings
from plugin.web.app import create_app
from plugin.wiring import build_services, ensure_knowledge_base
from tests.drain import drain
from tests.integration.servers import require_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REDMINE = "http://127.0.0.1:3000"
ADMIN_KEY = "a" * 40
REQUESTER_KEY = "b" * 40
TOKEN = "plugin-token-for-tests-0123456789"
LINK_RE = re.compile(r"https://ai\.example\.test(/r/[A-Za-z0-9_.\-]+)")


@pytest.fixture(scope="module")
def services(tmp_path_factory, use_embedder):
    require_server("Redmine", "127.0.0.1", 3000)
    settings = load_settings(
        env={},
        data_dir=str(tmp_path_factory.mktemp("var")),
        secret_key="k" * 32,
        links={"public_url": "https://ai.example.test"},
        decision={"threshold": 0.3},
        worker={"lease_s": 31 + 30, "backoff_base_s": 0.05, "backoff_max_s": 0.1},
        llm={"timeout_s": 1},
        redmine={"enabled": True, "url": REDMINE, "api_key": ADMIN_KEY, "plugin_token": TOKEN, "poll": True,
                 "poll_interval_s": 1},
    )
    s = build_services(settings, embedder=use_embedder)
    ensure_knowledge_base(s)
    return s


@pytest.fixture(scope="module")
def client(services):
    return create_app(services.settings, services=services).test_client()


def _drain(worker, timeout: float = 60.0) -> None:
    drain(worker, timeout)


def _create_issue(subject: str, description: str) -> dict:
    r = requests.post(f"{REDMINE}/issues.json", headers={"X-Redmine-API-Key": REQUESTER_KEY}, timeout=30,
                      json={"issue": {"project_id": "helpdesk", "subject": subject, "description": description}})
    assert r.status_code == 201, r.text
    return r.json()["issue"]


def _issue(issue_id: int, key: str) -> dict:
    r = requests.get(f"{REDMINE}/issues/{issue_id}.json?include=journals", headers={"X-Redmine-API-Key": key},
                     timeout=30)
    r.raise_for_status()
    return r.json()["issue"]


def _notify(client, issue: dict):
    """What the redmine_webhook plugin POSTs when an issue is opened (its webhook_listener.rb)."""
    payload = {"payload": {"action": "opened", "url": f"{REDMINE}/issues/{issue['id']}", "issue": issue}}
    return client.post(f"/webhooks/redmine?token={TOKEN}", json=payload)


def _ours(journals: list[dict]) -> list[dict]:
    return [j for j in journals if re.search(r"\bha-[0-9a-f]{12}\b", j.get("notes") or "")]


def test_suggestion_then_confirm_link_closes_the_issue(services, client):
    issue = _create_issue("Забыл пароль", "Как сбросить пароль от учетной записи? Не могу войти в Windows.")
    assert _notify(client, issue).status_code == 202
    assert _notify(client, issue).json["duplicates"] == 1  # the same delivery again: no second event
    _drain(services.new_worker())

    seen_by_admin = _ours(_issue(issue["id"], ADMIN_KEY)["journals"])
    assert [j["private_notes"] for j in seen_by_admin] == [False, True]
    public, private = seen_by_admin
    assert "password.example.ru" in public["notes"]
    assert words("ru")("confidence") in private["notes"]  # the agents' labels, in the ticket's language
    seen_by_requester = _ours(_issue(issue["id"], REQUESTER_KEY)["journals"])
    assert [j["id"] for j in seen_by_requester] == [public["id"]], "the requester must not see the agent note"

    solved_path, _ = LINK_RE.findall(public["notes"])
    page = client.get(solved_path)  # what a mail scanner does: nothing may change
    assert page.status_code == 200
    _drain(services.new_worker())
    assert not _issue(issue["id"], ADMIN_KEY)["status"].get("is_closed", False)
    assert _issue(issue["id"], ADMIN_KEY)["status"]["name"] != "Closed"

    assert client.post(solved_path).status_code == 200
    assert client.post(solved_path).status_code == 200  # idempotent
    _drain(services.new_worker())
    after = _issue(issue["id"], ADMIN_KEY)
    assert after["status"]["name"] == "Closed"
    assert services.store.suggestions.for_ticket("redmine", str(issue["id"])).outcome_applied_at is not None


def test_not_solved_keeps_the_issue_open_with_the_reason_for_agents(services, client):
    issue = _create_issue("Outlook не отправляет письма", "Письма висят в исходящих, что делать?")
    assert _notify(client, issue).status_code == 202
    _drain(services.new_worker())
    public = [j for j in _ours(_issue(issue["id"], ADMIN_KEY)["journals"]) if not j["private_notes"]]
    assert public, "expected a public suggestion for this common request"
    _, not_solved_path = LINK_RE.findall(public[0]["notes"])
    r = client.post(not_solved_path, data={"reason": "not_enough", "comment": "Всё равно висят, код 0x800CCC0F"})
    assert r.status_code == 200
    _drain(services.new_worker())
    journals = _issue(issue["id"], ADMIN_KEY)
    assert journals["status"]["name"] not in ("Closed", "Rejected")
    last = _ours(journals["journals"])[-1]
    assert last["private_notes"] and "0x800CCC0F" in last["notes"]
    assert all("0x800CCC0F" not in (j.get("notes") or "") for j in _issue(issue["id"], REQUESTER_KEY)["journals"])


def _close_as_agent(issue_id: int) -> None:
    headers = {"X-Redmine-API-Key": ADMIN_KEY}
    statuses = requests.get(f"{REDMINE}/issue_statuses.json", headers=headers, timeout=30).json()["issue_statuses"]
    closed = next(st for st in statuses if st.get("is_closed"))
    r = requests.put(f"{REDMINE}/issues/{issue_id}.json", headers=headers, timeout=30,
                     json={"issue": {"status_id": closed["id"], "notes": "Решено по телефону."}})
    assert r.status_code in (200, 204), r.text
    assert _issue(issue_id, ADMIN_KEY)["status"]["id"] == closed["id"]


def test_link_clicked_after_an_agent_closed_the_issue_records_nothing(services, client):
    """Issue 8 item 10: the page says the issue is closed; nothing is recorded, applied or learned."""
    issue = _create_issue("Забыл пароль от VPN", "Как сбросить пароль от учетной записи? Не могу войти в Windows.")
    assert _notify(client, issue).status_code == 202
    _drain(services.new_worker())
    public = [j for j in _ours(_issue(issue["id"], ADMIN_KEY)["journals"]) if not j["private_notes"]]
    assert public, "expected a public suggestion for this common request"
    solved_path, _ = LINK_RE.findall(public[0]["notes"])
    _close_as_agent(issue["id"])
    journals_before = len(_issue(issue["id"], ADMIN_KEY)["journals"])
    learned = services.engine.store.learned_counts()

    page = client.get(solved_path)
    assert page.status_code == 200 and "Обращение уже закрыто" in page.get_data(as_text=True)
    assert client.post(solved_path).status_code == 409
    _drain(services.new_worker())

    assert services.store.suggestions.for_ticket("redmine", str(issue["id"])).outcome is None
    assert services.engine.store.learned_counts() == learned
    assert len(_issue(issue["id"], ADMIN_KEY)["journals"]) == journals_before  # we wrote nothing more


class _Crash(BaseException):
    """Not an Exception: the worker does not catch it, as with a process that dies."""


def test_worker_dying_between_posting_and_recording_posts_one_suggestion(services, client, monkeypatch):
    issue = _create_issue("Забыл пароль от компьютера", "Как сбросить пароль? Не помню пароль после отпуска.")
    assert _notify(client, issue).status_code == 202
    original = services.store.suggestions.set_comment

    def die_after_posting(*args, **kwargs):
        raise _Crash("worker died after posting, before recording")

    monkeypatch.setattr(services.store.suggestions, "set_comment", die_after_posting)
    first = services.new_worker()
    first.lease_s = 1.0
    with pytest.raises(_Crash):
        first.run_once()
    monkeypatch.setattr(services.store.suggestions, "set_comment", original)
    time.sleep(1.2)  # the dead worker's lease runs out
    _drain(services.new_worker())
    ours = _ours(_issue(issue["id"], ADMIN_KEY)["journals"])
    assert [j["private_notes"] for j in ours] == [False, True], "one suggestion, one agent note"


def test_polling_finds_an_issue_without_webhooks(services):
    worker = services.new_worker()
    worker.run_due_pollers()  # sets the watermark
    issue = _create_issue("Не могу войти в почту", "Забыл пароль от почты, как восстановить доступ?")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not _ours(_issue(issue["id"], ADMIN_KEY)["journals"]):
        time.sleep(1.1)
        worker.run_due_pollers()
        _drain(worker)
    assert len([j for j in _ours(_issue(issue["id"], ADMIN_KEY)["journals"]) if j["private_notes"]]) == 1
