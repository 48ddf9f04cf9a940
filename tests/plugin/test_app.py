import pytest

from plugin.app import create_app
from plugin.services import build_services, ensure_knowledge_base
from plugin.settings import load_settings
from rag.embeddings import HashingEmbedder


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    settings = load_settings(env={}, data_dir=str(tmp_path_factory.mktemp("app")),
                             server={"max_body_bytes": 4096})
    svc = build_services(settings, embedder=HashingEmbedder())
    ensure_knowledge_base(svc)
    return svc


@pytest.fixture
def client(services):
    return create_app(services.settings, services=services).test_client()


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
    services.engine.config.threshold = 0.0
    try:
        body = client.post("/api/ask", json={"text": "Забыл пароль от учетной записи, как сбросить?"}).get_json()
    finally:
        services.engine.config.threshold = 0.5
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
    r = client.post("/api/ask", json={"text": "a" * 20_001})
    assert r.status_code == 400
    assert "longer than" in r.get_json()["detail"]


def test_wrong_method_and_unknown_path_are_json(client):
    assert client.get("/api/ask").status_code == 405
    r = client.get("/nope")
    assert r.status_code == 404 and r.is_json


def test_empty_knowledge_base_is_503_with_hint(tmp_path):
    settings = load_settings(env={}, data_dir=str(tmp_path))
    svc = build_services(settings, embedder=HashingEmbedder())
    client = create_app(settings, services=svc).test_client()
    r = client.post("/api/ask", json={"text": "VPN"})
    assert r.status_code == 503
    assert "kb import" in r.get_json()["detail"]


@pytest.mark.slow
def test_default_app_falls_back_to_bundled_encoder_and_says_so(tmp_path):
    """The real defaults: the configured hub model is unavailable offline, USE is used, /healthz says so."""
    app = create_app(load_settings(env={}, data_dir=str(tmp_path)))
    body = app.test_client().get("/healthz").get_json()
    emb = body["models"]["embedding"]
    assert body["status"] == "degraded"
    assert emb["fallback"] is True and emb["in_use"].startswith("use-multilingual")
    assert "paraphrase-multilingual-MiniLM-L12-v2" in emb["fallback_reason"]
    r = app.test_client().post("/api/ask", json={"text": "Как сбросить пароль от почты?"})
    assert r.get_json()["category"]["levels"][0] in ("Учетные записи и пароли", "Электронная почта")
