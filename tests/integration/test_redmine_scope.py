"""Issue 8 item 7 against the real Redmine: ``redmine.projects`` holds on every path.

A second project (``other-dept``, created here once through the REST API as the admin) stands for
another department sharing the Redmine. With ``redmine.projects: [helpdesk]`` an issue there gets
nothing, whether a webhook announces it or polling would find it, and an issue moved there after
its webhook was sent is judged by where it is when re-fetched, not by what the delivery said.
"""

from __future__ import annotations

import re
import time

import pytest
import requests

from plugin.settings import load_settings
from plugin.web.app import create_app
from plugin.wiring import build_services, ensure_knowledge_base
from tests.drain import drain
from tests.integration.servers import require_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REDMINE = "http://127.0.0.1:3000"
ADMIN_KEY = "a" * 40
REQUESTER_KEY = "b" * 40
TOKEN = "plugin-token-for-scope-tests-0123456789"
OTHER = "other-dept"


def _call(method: str, path: str, key: str = ADMIN_KEY, **kw) -> requests.Response:
    return requests.request(method, REDMINE + path, headers={"X-Redmine-API-Key": key}, timeout=30, **kw)


def _ensure_other_project() -> int:
    r = _call("GET", f"/projects/{OTHER}.json")
    if r.status_code == 404:
        trackers = [t["id"] for t in _call("GET", "/trackers.json").json()["trackers"]]
        created = _call("POST", "/projects.json", json={"project": {
            "name": "Other department", "identifier": OTHER, "is_public": False, "tracker_ids": trackers,
            "enabled_module_names": ["issue_tracking"]}})
        if created.status_code not in (201, 422):  # 422: created meanwhile by a parallel run
            created.raise_for_status()
        r = _call("GET", f"/projects/{OTHER}.json")
    r.raise_for_status()
    project_id = int(r.json()["project"]["id"])
    # The requester files issues there too (Reporter), so an issue there is a real request, not one
    # the plugin's own account wrote (which is skipped for that reason alone).
    requester = _call("GET", "/users/current.json", REQUESTER_KEY).json()["user"]["id"]
    reporter = next(x["id"] for x in _call("GET", "/roles.json").json()["roles"] if x["name"] == "Reporter")
    member = _call("POST", f"/projects/{OTHER}/memberships.json",
                   json={"membership": {"user_id": requester, "role_ids": [reporter]}})
    if member.status_code not in (201, 422):  # 422: already a member
        member.raise_for_status()
    return project_id


@pytest.fixture(scope="module")
def services(tmp_path_factory, use_embedder):
    require_server("Redmine", "127.0.0.1", 3000)
    _ensure_other_project()
    settings = load_settings(
        env={},
        data_dir=str(tmp_path_factory.mktemp("var")),
        secret_key="k" * 32,
        links={"public_url": "https://ai.example.test"},
        decision={"threshold": 0.3},
        worker={"lease_s": 61, "backoff_base_s": 0.05, "backoff_max_s": 0.1},
        llm={"timeout_s": 1},
        redmine={"enabled": True, "url": REDMINE, "api_key": ADMIN_KEY, "plugin_token": TOKEN,
                 "projects": ["helpdesk"]},
    )
    s = build_services(settings, embedder=use_embedder)
    ensure_knowledge_base(s)
    return s


@pytest.fixture(scope="module")
def client(services):
    return create_app(services.settings, services=services).test_client()


def _create_issue(project: str, subject: str, description: str, key: str) -> dict:
    r = _call("POST", "/issues.json", key, json={"issue": {"project_id": project, "subject": subject,
                                                            "description": description}})
    assert r.status_code == 201, r.text
    return r.json()["issue"]


def _ours(issue_id: int) -> list[dict]:
    journals = _call("GET", f"/issues/{issue_id}.json", params={"include": "journals"}).json()["issue"]["journals"]
    return [j for j in journals if re.search(r"\bha-[0-9a-f]{12}\b", j.get("notes") or "")]


def _notify(client, issue: dict, project: dict | None = None):
    """What the redmine_webhook plugin POSTs; ``project`` lets a test send what a stale payload says."""
    sent = dict(issue, project=project or issue["project"])
    return client.post(f"/webhooks/redmine?token={TOKEN}",
                       json={"payload": {"action": "opened", "url": f"{REDMINE}/issues/{issue['id']}",
                                         "issue": sent}})


QUESTION = ("Забыл пароль", "Как сбросить пароль от учетной записи? Не могу войти в Windows.")


def test_item7_a_webhook_for_another_project_is_not_answered(services, client):
    other = _create_issue(OTHER, *QUESTION, key=REQUESTER_KEY)
    ours = _create_issue("helpdesk", *QUESTION, key=REQUESTER_KEY)
    assert _notify(client, other).status_code == 202
    assert _notify(client, ours).status_code == 202
    drain(services.new_worker(), 60)
    assert _ours(other["id"]) == [], "an issue outside redmine.projects was answered"
    assert services.store.suggestions.for_ticket("redmine", str(other["id"])) is None
    assert len(_ours(ours["id"])) == 2  # the control: the helpdesk's own issue gets its two notes


def test_item7_scope_is_judged_after_re_fetching(services, client):
    """A delivery says 'helpdesk', but the issue was moved to another project meanwhile."""
    issue = _create_issue("helpdesk", *QUESTION, key=REQUESTER_KEY)
    helpdesk_ref = issue["project"]
    assert _call("PUT", f"/issues/{issue['id']}.json",
                 json={"issue": {"project_id": _ensure_other_project()}}).status_code == 204
    assert _notify(client, issue, project=helpdesk_ref).status_code == 202
    drain(services.new_worker(), 60)
    assert _ours(issue["id"]) == []
    assert services.store.suggestions.for_ticket("redmine", str(issue["id"])) is None


def test_item7_polling_does_not_reach_another_project(services):
    connector = services.connectors["redmine"]
    _, since = connector.poll(None)
    time.sleep(1.1)  # Redmine's timestamps have whole seconds
    other = _create_issue(OTHER, "VPN не подключается", "Ошибка 809 при подключении.", key=REQUESTER_KEY)
    ours = _create_issue("helpdesk", "VPN не подключается", "Ошибка 809 при подключении.", key=REQUESTER_KEY)
    events, _ = connector.poll(since)
    ids = {e.ticket_id for e in events}
    assert str(ours["id"]) in ids and str(other["id"]) not in ids
