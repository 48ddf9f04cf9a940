"""The web boundary through the real app: hostile nesting (issue 8 item 8), the API key and what
/api/ask returns (item 9). The webhooks are the real GLPI and Redmine sources; no helpdesk is reached."""

from __future__ import annotations

import json

import pytest

from plugin.web.app import create_app
from tests.plugin.web_app import (
    PLUGIN_TOKEN,
    auth,
    boundary_services,
    glpi_headers,
    nested,
    redmine_native_headers,
)


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    return boundary_services(tmp_path_factory.mktemp("boundary"))


@pytest.fixture
def client(services):
    return create_app(services.settings, services=services).test_client()


# ------------------------------------------------------------------------------------ item 8: nesting
DEPTHS = [200, 990, 5_000, 100_000]


def _deep_glpi_envelope(depth: int) -> bytes:
    return b'{"event": "new", "item": {"id": 1, "status": 1, "request_type": 1, "x": ' + nested(depth) + b"}}"


@pytest.mark.parametrize("depth", DEPTHS)
def test_item8_deeply_nested_glpi_delivery_is_400_and_stores_nothing(services, client, depth):
    before = services.store.inbox.counts()
    for body in (nested(depth), _deep_glpi_envelope(depth)):
        r = client.post("/webhooks/glpi", data=body, headers=glpi_headers(body))
        assert r.status_code == 400, r.get_data(as_text=True)[:300]
        assert r.is_json and "Traceback" not in r.get_data(as_text=True)
    assert services.store.inbox.counts() == before


@pytest.mark.parametrize("depth", DEPTHS)
def test_item8_deeply_nested_redmine_delivery_is_400_and_stores_nothing(services, client, depth):
    before = services.store.inbox.counts()
    native = b'{"type": "issue.created", "data": {"issue": {"id": 1, "x": ' + nested(depth) + b"}}}"
    plugin = b'{"payload": {"action": "opened", "issue": {"id": 1, "x": ' + nested(depth) + b"}}}"
    for body in (nested(depth), native):
        r = client.post("/webhooks/redmine", data=body, headers=redmine_native_headers(body))
        assert r.status_code == 400, r.get_data(as_text=True)[:300]
    for body in (nested(depth), plugin):
        r = client.post("/webhooks/redmine", query_string={"token": PLUGIN_TOKEN}, data=body,
                        content_type="application/json")
        assert r.status_code == 400, r.get_data(as_text=True)[:300]
    assert services.store.inbox.counts() == before


@pytest.mark.parametrize("depth", DEPTHS)
def test_item8_deeply_nested_ask_is_400(client, depth):
    for body in (nested(depth), b'{"text": "VPN", "category": ' + nested(depth) + b"}"):
        r = client.post("/api/ask", data=body, content_type="application/json", headers=auth())
        assert r.status_code == 400, r.get_data(as_text=True)[:300]
        assert "nested" in r.get_json()["detail"] or "JSON object" in r.get_json()["detail"]


def test_item8_ordinary_nesting_still_works(services, client):
    body = json.dumps({"event": "new", "item": {"id": 5, "name": "VPN", "content": "x", "status": {"id": 1},
                                                "request_type": {"id": 1}, "entity": {"id": 0}}}).encode()
    r = client.post("/webhooks/glpi", data=body, headers=glpi_headers(body))
    assert r.status_code == 202
