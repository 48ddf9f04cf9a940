import json
import stat

import pytest

from plugin.settings import load_settings
from plugin.web.api import API_EXTENSION
from plugin.web.app import create_app
from plugin.wiring import build_services, ensure_knowledge_base
from rag.embeddings import HashingEmbedder
from rag.policy import DecisionPolicy

KEYS = ["first-api-key-0123456789abcdef", "second-api-key-0123456789abcdef"]


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    settings = load_settings(env={}, data_dir=str(tmp_path_factory.mktemp("app")),
                             server={"max_body_bytes": 4096}, api={"keys": KEYS})
    svc = build_services(settings, embedder=HashingEmbedder())
    ensure_knowledge_base(svc)
    return svc


@pytest.fixture
def app(services):
    return create_app(services.settings, services=services)


@pytest.fixture
def client(app):
    """A client that sends the first API key with every request (issue 8 item 9)."""
    c = app.test_client()
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {KEYS[0]}"
    return c


@pytest.fixture
def anonymous(app):
    return app.test_client()


def test_healthz_reports_models_and_index(client):
    r = client.get("/healthz")
    assert r.status_code == 200
    body = r.get_json()
    assert body["status"] == "ok"
    assert body["models"]["embedding"]["in_use"] == "hashing:256"
    assert body["models"]["llm"]["mode"] == "extractive only"
    assert body["index"]["entries"] >= 150  # the bundled sample KB was imported on first start


def test_ask_returns_category_answers_decision(client):
    r = client.post("/api/ask", json={"text": "Не могу подключиться к VPN из дома, AnyConnect пишет ошибку"})
    assert r.status_code == 200
    body = r.get_json()
    assert body["decision"] in ("answer", "abstain")
    assert body["hits"] and all(0.0 <= h["confidence"] <= 1.0 for h in body["hits"])
    assert body["category"]["levels"][0] == "VPN и удаленный доступ"
    assert len({h["answer_id"] for h in body["hits"]}) == len(body["hits"])


def test_ask_answer_is_composed_when_confident(client, services):
    services.engine.config.policy = DecisionPolicy(threshold=0.0)
    try:
        body = client.post("/api/ask", json={"text": "Забыл пароль от учетной записи, как сбросить?"}).get_json()
    finally:
        services.engine.config.policy = DecisionPolicy(threshold=0.5)
    assert body["decision"] == "answer"
    assert body["composed"]["mode"] == "extractive"
    assert body["hits"][0]["answer"][:40] in body["composed"]["text"]


def test_ask_filters_by_category(client):
    body = client.post("/api/ask", json={"text": "не печатает", "category": "Принтеры и сканеры"}).get_json()
    assert body["hits"] and {h["categories"][0] for h in body["hits"]} == {"Принтеры и сканеры"}


@pytest.mark.parametrize(
    "kwargs, status, detail",
    [
        ({"data": b"{not json", "content_type": "application/json"}, 400, "JSON object"),
        ({"json": ["a", "list"]}, 400, "JSON object"),
        ({"json": {"text": "   "}}, 400, "non-empty"),
        ({"json": {"text": 42}}, 400, "non-empty"),
        ({"json": {"text": "x", "category": 3}}, 400, "category"),
        ({"json": {"text": "x", "compose": "yes"}}, 400, "compose"),
        ({"json": {"text": "я" * 5000}}, 413, ""),
    ],
)
def test_bad_requests_get_clear_json_errors(client, kwargs, status, detail):
    r = client.post("/api/ask", **kwargs)
    assert r.status_code == status
    assert r.is_json
    assert detail in r.get_json()["detail"]


def test_text_over_limit_is_refused(services, tmp_path):
    settings = services.settings.model_copy(update={"server": services.settings.server.model_copy(
        update={"max_body_bytes": 1_000_000})})
    client = create_app(settings, services=services).test_client()
    r = client.post("/api/ask", json={"text": "a" * 20_001}, headers={"Authorization": f"Bearer {KEYS[0]}"})
    assert r.status_code == 400
    assert "longer than" in r.get_json()["detail"]


def test_wrong_method_and_unknown_path_are_json(client):
    assert client.get("/api/ask").status_code == 405
    r = client.get("/nope")
    assert r.status_code == 404 and r.is_json


def test_empty_knowledge_base_is_503_with_hint(tmp_path):
    settings = load_settings(env={}, data_dir=str(tmp_path), api={"keys": KEYS})
    svc = build_services(settings, embedder=HashingEmbedder())
    client = create_app(settings, services=svc).test_client()
    r = client.post("/api/ask", json={"text": "VPN"}, headers={"X-API-Key": KEYS[1]})
    assert r.status_code == 503
    assert "kb import" in r.get_json()["detail"]


@pytest.mark.slow
def test_default_app_falls_back_to_bundled_encoder_and_says_so(tmp_path):
    """The real defaults: the configured hub model is unavailable offline, USE is used, /healthz says so."""
    app = create_app(load_settings(env={}, data_dir=str(tmp_path)))
    key = (tmp_path / "api_key").read_text().strip()  # no api.keys: a local key was created
    body = app.test_client().get("/healthz", headers={"Authorization": f"Bearer {key}"}).get_json()
    emb = body["models"]["embedding"]
    assert body["status"] == "degraded"
    assert emb["fallback"] is True and emb["in_use"].startswith("use-multilingual")
    assert "paraphrase-multilingual-MiniLM-L12-v2" in emb["fallback_reason"]
    r = app.test_client().post("/api/ask", json={"text": "Как сбросить пароль от почты?"},
                               headers={"X-API-Key": key})
    assert r.get_json()["category"]["levels"][0] in ("Учетные записи и пароли", "Электронная почта")


# ------------------------------------------------------------------ issue 8 item 9: the API is not open
@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong-key-0123456789abcdef"},
    {"Authorization": f"Basic {KEYS[0]}"},
    {"X-API-Key": KEYS[0][:-1]},
    {"X-API-Key": KEYS[0] + "x"},
    {"Authorization": "Bearer "},
])
def test_item9_api_without_a_valid_key_is_401(anonymous, services, headers):
    before = services.engine.store.learned_counts()
    r = anonymous.post("/api/ask", json={"text": "Не могу подключиться к VPN"}, headers=headers)
    assert r.status_code == 401
    assert r.is_json and "API key" in r.get_json()["detail"]
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert services.engine.store.learned_counts() == before


@pytest.mark.parametrize("headers", [
    {"Authorization": f"Bearer {KEYS[0]}"},
    {"Authorization": f"bearer {KEYS[1]}"},
    {"X-API-Key": KEYS[1]},
])
def test_item9_every_configured_key_works_in_either_header(anonymous, headers):
    r = anonymous.post("/api/ask", json={"text": "Не могу подключиться к VPN"}, headers=headers)
    assert r.status_code == 200


def test_item9_healthz_says_only_ok_without_a_key(anonymous):
    r = anonymous.get("/healthz")
    assert r.status_code == 200 and r.get_json() == {"status": "ok"}
    full = anonymous.get("/healthz", headers={"X-API-Key": KEYS[0]}).get_json()
    assert full["status"] == "ok" and "models" in full and "index" in full
    assert anonymous.get("/healthz", headers={"X-API-Key": "not-a-key-0123456789abcdef"}).status_code == 401


def test_item9_hits_never_carry_the_entries_source_text(client, services):
    text = "Забыл пароль от учетной записи, как сбросить?"
    raw = services.engine.ask(text, compose=False)
    r = client.post("/api/ask", json={"text": text, "compose": False})
    body = r.get_json()
    assert body["hits"] and all("question" not in h for h in body["hits"])
    assert [h["entry_id"] for h in body["hits"]] == [h.entry_id for h in raw.hits]
    dumped = json.dumps(body, ensure_ascii=False)
    for hit in raw.hits:
        if hit.question not in (hit.title + hit.answer):
            assert hit.question not in dumped


def test_item9_retrieval_reads_only_the_first_max_query_chars(client, services):
    limit = services.settings.api.max_query_chars
    text = "VPN does not connect from home. " + "more words " * 300  # ASCII: under server.max_body_bytes here
    assert len(text) > limit
    body = client.post("/api/ask", json={"text": text}).get_json()
    assert body["truncated"] is True and body["query"] == text[:limit]
    assert client.post("/api/ask", json={"text": "VPN"}).get_json()["truncated"] is False


def test_item9_a_full_engine_pool_answers_503_with_retry_after(app, client):
    slots = app.extensions[API_EXTENSION].slots
    assert slots.acquire(blocking=False)  # the one slot (api.max_concurrent_asks: 1) is taken
    try:
        r = client.post("/api/ask", json={"text": "VPN"})
        assert r.status_code == 503 and r.headers["Retry-After"] == "1" and r.is_json
        assert client.get("/healthz").status_code == 200  # the rest of the service is not held up
    finally:
        slots.release()
    assert client.post("/api/ask", json={"text": "VPN"}).status_code == 200


def test_item9_without_configured_keys_a_local_key_is_created_once(tmp_path, services):
    settings = load_settings(env={}, data_dir=str(tmp_path / "var"))
    create_app(settings, services=services)
    path = tmp_path / "var" / "api_key"
    key = path.read_text().strip()
    assert len(key) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    client = create_app(settings, services=services).test_client()  # a restart keeps the key
    assert path.read_text().strip() == key
    assert client.post("/api/ask", json={"text": "VPN"}, headers={"X-API-Key": key}).status_code == 200
    assert client.post("/api/ask", json={"text": "VPN"}, headers={"X-API-Key": KEYS[0]}).status_code == 401
