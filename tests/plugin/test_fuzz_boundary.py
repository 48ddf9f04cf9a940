"""Fuzzing the web boundary (issue 8): both webhook endpoints and /api/ask, through the real app.

Bodies are random JSON, raw bytes, hostile nesting, and real delivery fixtures with random parts
replaced; credentials are valid, wrong, missing or malformed (GLPI signature and timestamp, Redmine 7
signature, the plugin token in the query or the header). Whatever arrives: never a 5xx, and a
delivery that is not accepted (4xx, or a 2xx "ignored") stores nothing in the inbox. Bounded for CI:
a few hundred examples per test, no deadline (the shared CI machine is slow and uneven).
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugin.web.app import create_app
from tests.plugin.web_app import (
    API_KEYS,
    GLPI_SECRET,
    PLUGIN_TOKEN,
    REDMINE_SECRET,
    boundary_services,
    glpi_headers,
    nested,
    redmine_native_headers,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    return boundary_services(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(scope="module")
def client(services):
    return create_app(services.settings, services=services).test_client()


# ---------------------------------------------------------------------------------------- strategies
json_scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=5), max_leaves=30)


def _fixtures(source: str) -> list[Any]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted((FIXTURES / source).glob("*.json"))]


@st.composite
def mutated(draw: st.DrawFn, bases: list[Any]) -> Any:
    """A real delivery with 0-4 random subtrees replaced by random JSON (or removed)."""
    doc = copy.deepcopy(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(0, 4))):
        parent: Any = None
        key: Any = None
        node = doc
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):
            parent = node
            key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
            node = node[key]
        if parent is None:
            continue
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[key]
        else:
            parent[key] = draw(json_values)
    return doc


def bodies(source: str) -> st.SearchStrategy[bytes]:
    as_json = (mutated(_fixtures(source)) | json_values).map(lambda v: json.dumps(v).encode())
    deep = st.integers(1, 20_000).map(nested)
    return as_json | deep | st.binary(max_size=300) | st.text(max_size=200).map(str.encode)


def _inbox_size(services) -> int:
    return sum(services.store.inbox.counts().values())


def _check(services, response, before: int) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    assert response.is_json
    if response.status_code != 202:
        assert _inbox_size(services) == before, f"a refused delivery ({response.status_code}) stored something"


# ---------------------------------------------------------------------------------------- GLPI
glpi_credentials = st.sampled_from(["valid", "wrong secret", "no signature", "no timestamp", "text timestamp",
                                    "old", "future", "garbage signature"])


@FUZZ
@given(body=bodies("glpi"), how=glpi_credentials, junk=st.text(max_size=40))
def test_fuzz_glpi_webhook_never_5xx_and_refusals_store_nothing(services, client, body, how, junk):
    now = int(time.time())
    headers = {
        "valid": lambda: glpi_headers(body),
        "wrong secret": lambda: glpi_headers(body, secret="not-" + GLPI_SECRET),
        "no signature": lambda: {"X-GLPI-timestamp": str(now)},
        "no timestamp": lambda: {"X-GLPI-signature": glpi_headers(body)["X-GLPI-signature"]},
        "text timestamp": lambda: {"X-GLPI-signature": "0" * 64, "X-GLPI-timestamp": junk or "x"},
        "old": lambda: glpi_headers(body, ts=now - 7 * 3600),
        "future": lambda: glpi_headers(body, ts=now + 3600),
        "garbage signature": lambda: {"X-GLPI-signature": junk.encode("ascii", "ignore").decode() or "zz",
                                      "X-GLPI-timestamp": str(now)},
    }[how]()
    headers = {k: v.replace("\n", " ").replace("\r", " ") for k, v in headers.items()}
    before = _inbox_size(services)
    r = client.post("/webhooks/glpi", data=body, headers=headers)
    _check(services, r, before)
    if how != "valid":
        assert r.status_code in (400, 401), r.status_code


@FUZZ
@given(token=st.text(max_size=80))
def test_fuzz_glpi_challenge_never_answers_a_chosen_token(client, token):
    r = client.get("/webhooks/glpi", query_string={"crc_token": token})
    assert r.status_code == 403 and r.get_json() == {"error": "Forbidden", "detail": "challenge refused"}


# ---------------------------------------------------------------------------------------- Redmine
redmine_credentials = st.sampled_from(["native", "native wrong", "token query", "token header", "token wrong",
                                       "none", "both wrong signature"])


@FUZZ
@given(body=bodies("redmine"), how=redmine_credentials)
def test_fuzz_redmine_webhook_never_5xx_and_refusals_store_nothing(services, client, body, how):
    query: dict[str, str] = {}
    headers: dict[str, str] = {"Content-Type": "application/json"}
    if how == "native":
        headers = redmine_native_headers(body)
    elif how == "native wrong":
        headers = redmine_native_headers(body, secret="not-" + REDMINE_SECRET)
    elif how == "token query":
        query = {"token": PLUGIN_TOKEN}
    elif how == "token header":
        headers["X-Helpdesk-Assist-Token"] = PLUGIN_TOKEN
    elif how == "token wrong":
        query = {"token": PLUGIN_TOKEN[:-1]}
    elif how == "both wrong signature":
        headers = redmine_native_headers(body, secret="x" * 40)
        query = {"token": PLUGIN_TOKEN}  # a valid token does not excuse a wrong signature
    before = _inbox_size(services)
    r = client.post("/webhooks/redmine", query_string=query, data=body, headers=headers)
    _check(services, r, before)
    if how not in ("native", "token query", "token header"):
        assert r.status_code in (400, 401), r.status_code


# ---------------------------------------------------------------------------------------- /api/ask
ask_bodies = (
    st.fixed_dictionaries({"text": st.text(max_size=300)},
                          optional={"category": json_values, "compose": json_values}).map(
        lambda v: json.dumps(v).encode())
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.integers(1, 20_000).map(lambda d: b'{"text": "VPN", "category": ' + nested(d) + b"}")
    | st.binary(max_size=200)
)


@FUZZ
@given(body=ask_bodies, with_key=st.booleans())
def test_fuzz_api_ask_never_5xx(services, client, body, with_key):
    headers = {"Authorization": f"Bearer {API_KEYS[1]}"} if with_key else {}
    before = _inbox_size(services)
    r = client.post("/api/ask", data=body, content_type="application/json", headers=headers)
    assert r.status_code < 500, r.get_data(as_text=True)[:500]
    assert r.is_json
    if not with_key:
        assert r.status_code == 401
    elif r.status_code == 200:
        assert all("question" not in h for h in r.get_json()["hits"])
    assert _inbox_size(services) == before
