"""The real Redmine started by ``scripts/redmine_up.sh`` (``scripts/test_servers.sh up``).

Keys and users come from ``scripts/redmine_setup.rb``: admin (the plugin's account in these tests,
key a*40), requester (Reporter, b*40), agent (role "Agent (no private notes)", c*40), project
``helpdesk``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from connectors.redmine import RedmineConnector
from tests.integration.servers import require_server

HOST, PORT = "127.0.0.1", 3000


@dataclass(frozen=True)
class RedmineServer:
    url: str = f"http://{HOST}:{PORT}"
    admin_key: str = "a" * 40
    requester_key: str = "b" * 40
    agent_key: str = "c" * 40
    requester_password: str = "requester-pass-123"
    project: str = "helpdesk"

    def call(self, method: str, path: str, key: str, **kw: Any) -> requests.Response:
        resp = requests.request(method, self.url + path, headers={"X-Redmine-API-Key": key}, timeout=30, **kw)
        resp.raise_for_status()
        return resp

    def create_issue(self, subject: str = "", description: str = "The printer shows error 49.") -> int:
        """The requester files an issue (Support tracker); returns its id."""
        trackers = self.call("GET", "/trackers.json", self.admin_key).json()["trackers"]
        tracker = next(t["id"] for t in trackers if t["name"] == "Support")
        body = {
            "issue": {
                "project_id": self.project,
                "tracker_id": tracker,
                "subject": subject or f"Printer does not print {uuid.uuid4().hex[:6]}",
                "description": description,
            }
        }
        return int(self.call("POST", "/issues.json", self.requester_key, json=body).json()["issue"]["id"])

    def issue(self, issue_id: int, key: str) -> dict[str, Any]:
        return self.call("GET", f"/issues/{issue_id}.json", key, params={"include": "journals"}).json()["issue"]

    def status_id(self, name: str) -> int:
        statuses = self.call("GET", "/issue_statuses.json", self.admin_key).json()["issue_statuses"]
        return next(s["id"] for s in statuses if s["name"] == name)

    def connector(self, key: str = "", **kw: Any) -> RedmineConnector:
        return RedmineConnector(self.url, key or self.admin_key, **kw)


@pytest.fixture(scope="session")
def redmine() -> RedmineServer:
    require_server("Redmine", HOST, PORT)
    return RedmineServer()
