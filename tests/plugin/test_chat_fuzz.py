"""Fuzzing the chat's boundary through the real app: the JSON API and the page forms get random JSON,
random form fields, random ids and random person headers. Never a 5xx; another person's conversation
is never shown. Bounded for CI (a hundred examples per test, no deadline)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugin.web.app import create_app
from tests.plugin.web_app import API_KEYS, boundary_services

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.function_scoped_fixture])
json_scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=20)
fields = st.sampled_from(["text", "option", "turn", "helpful", "reason", "comment", "login", "email"])
bodies = (st.fixed_dictionaries({}, optional={"text": json_values, "option": json_values, "turn": json_values,
                                             "helpful": json_values, "reason": json_values,
                                             "comment": json_values, "login": json_values})
          .map(lambda v: json.dumps(v).encode())
          | json_values.map(lambda v: json.dumps(v).encode())
          | st.binary(max_size=100))


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    services = boundary_services(tmp_path_factory.mktemp("chat-fuzz"),
                                 chat={"messages_per_minute": 10_000, "ip_messages_per_minute": 100_000})
    return create_app(services.settings, services=services)


@pytest.fixture(scope="module")
def owned(app: Any) -> str:
    """A conversation of the API person "owner" (answered by the fast embedder)."""
    r = app.test_client().post("/api/chat/conversations", json={"text": "Не печатает принтер"},
                               headers={"Authorization": f"Bearer {API_KEYS[0]}", "X-Chat-User": "owner"})
    assert r.status_code == 201
    return str(r.get_json()["id"])


@FUZZ
@given(body=bodies, user=st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=30), endpoint=st.sampled_from(["messages", "ratings", "handoff", ""]),
       which=st.sampled_from(["owned", "random"]), random_id=st.text(max_size=80))
def test_fuzz_chat_api_never_5xx(app: Any, owned: str, body: bytes, user: str, endpoint: str, which: str,
                                 random_id: str) -> None:
    conv_id = owned if which == "owned" else random_id
    headers = {"Authorization": f"Bearer {API_KEYS[0]}"}
    try:
        headers["X-Chat-User"] = user.encode("latin-1").decode("latin-1")
    except UnicodeEncodeError:
        pass
    client = app.test_client()
    path = "/api/chat/conversations" + (f"/{conv_id}" if endpoint or which == "random" else "")
    path += f"/{endpoint}" if endpoint else ""
    r = client.post(path, data=body, content_type="application/json", headers=headers) if endpoint or \
        which == "owned" else client.get(path, headers=headers)
    assert r.status_code < 500, r.get_data(as_text=True)[:300]
    if which == "owned" and user.strip().casefold() != "owner" and r.status_code == 200:
        assert owned not in r.get_data(as_text=True), "another person's conversation was shown"


@FUZZ
@given(form=st.dictionaries(fields, st.text(max_size=50), max_size=6), action=st.sampled_from(
    ["", "/choose", "/rate", "/handoff"]), with_csrf=st.booleans(), htmx=st.booleans())
def test_fuzz_chat_forms_never_5xx(app: Any, form: dict[str, str], action: str, with_csrf: bool,
                                   htmx: bool) -> None:
    client = app.test_client()
    page = client.get("/chat").get_data(as_text=True)
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert token
    r = client.post("/chat", data={"text": "VPN не работает", "csrf": token.group(1)})
    conv_id = r.headers["Location"].split("/chat/c/")[1].split("#")[0]
    data = dict(form)
    if with_csrf:
        data["csrf"] = token.group(1)
    r = client.post(f"/chat/c/{conv_id}{action}", data=data, headers={"HX-Request": "true"} if htmx else {})
    assert r.status_code < 500, r.get_data(as_text=True)[:300]
    if not with_csrf:
        assert r.status_code == 403
