"""Fixtures for the Redmine connector's unit tests: recorded exchanges with ``responses``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses

from connectors.redmine import RedmineConnector

URL = "https://redmine.example"
KEY = "k" * 40
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "redmine"

STATUSES = {
    "issue_statuses": [
        {"id": 1, "name": "New", "is_closed": False},
        {"id": 2, "name": "In Progress", "is_closed": False},
        {"id": 3, "name": "Resolved", "is_closed": False},
        {"id": 4, "name": "Feedback", "is_closed": False},
        {"id": 5, "name": "Closed", "is_closed": True},
        {"id": 6, "name": "Rejected", "is_closed": True},
    ]
}
ME = {"user": {"id": 1, "login": "admin", "admin": True, "firstname": "Redmine", "lastname": "Admin"}}


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def issue(
    issue_id: int = 7, status: tuple[int, str, bool] = (1, "New", False), journals: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "issue": {
            "id": issue_id,
            "project": {"id": 1, "name": "Helpdesk"},
            "tracker": {"id": 3, "name": "Support"},
            "status": {"id": status[0], "name": status[1], "is_closed": status[2]},
            "priority": {"id": 2, "name": "Normal"},
            "author": {"id": 5, "name": "Rita Requester"},
            "category": {"id": 2, "name": "Printers"},
            "subject": "Printer does not print",
            "description": "Error 49",
            "is_private": False,
            "created_on": "2026-11-24T02:48:34Z",
            "updated_on": "2026-11-24T02:49:02Z",
            "closed_on": None,
            "journals": journals or [],
        }
    }


def journal(
    jid: int, user_id: int, notes: str = "", private: bool = False, status: tuple[str, str] | None = None
) -> dict[str, Any]:
    details = []
    if status:
        details.append({"property": "attr", "name": "status_id", "old_value": status[0], "new_value": status[1]})
    return {
        "id": jid,
        "user": {"id": user_id, "name": f"user {user_id}"},
        "notes": notes,
        "created_on": "2026-11-24T03:00:00Z",
        "private_notes": private,
        "details": details,
    }


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as r:
        yield r


@pytest.fixture
def connector() -> RedmineConnector:
    return RedmineConnector(URL, KEY, webhook_secret="s3cret", plugin_token="t0ken")


def add_lookups(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{URL}/issue_statuses.json", json=STATUSES)
    rsps.get(f"{URL}/issues.json", json={"issues": [], "total_count": 0})
    rsps.get(f"{URL}/users/current.json", json=ME)
    rsps.get(f"{URL}/users/5.json", json={"user": {"id": 5, "login": "requester", "mail": "rita@example.test"}})


def body_of(call: Any) -> Any:
    return json.loads(call.request.body)
