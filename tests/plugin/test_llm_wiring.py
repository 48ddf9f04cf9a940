"""The configured LLM reaches the engine through the settings, and its absence is visible."""

import pytest

from plugin.settings import load_settings
from plugin.web.app import create_app
from plugin.wiring import build_services, ensure_knowledge_base
from rag.embeddings import HashingEmbedder
from tests.rag.llm.tiny_qwen import build_tiny_qwen

pytestmark = pytest.mark.slow


KEY = "llm-wiring-test-key-0123456789"


def _client(tmp_path, llm: dict):
    settings = load_settings(env={}, data_dir=str(tmp_path / "var"), llm=llm, decision={"threshold": 0.0},
                             api={"keys": [KEY]})
    services = build_services(settings, embedder=HashingEmbedder())
    ensure_knowledge_base(services)
    client = create_app(settings, services=services).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {KEY}"  # /api/* and the full /healthz need a key
    return client


def test_transformers_backend_from_a_local_qwen_directory(tmp_path):
    model = build_tiny_qwen(tmp_path / "tiny-qwen")
    client = _client(tmp_path, {"backend": "transformers", "model": str(model), "max_new_tokens": 16})
    health = client.get("/healthz").get_json()
    assert health["models"]["llm"]["mode"] == "llm"
    assert str(model) in health["models"]["llm"]["in_use"]
    body = client.post("/api/ask", json={"text": "Как сбросить пароль от учетной записи?"}).get_json()
    composed = body["composed"]
    # A random tiny model cannot write a grounded, cited Russian answer: the checks must catch that,
    # and the requester gets the entries themselves with the reason recorded.
    assert composed["mode"] == "extractive"
    assert composed["fallback_reason"] not in ("", "no LLM configured")


def test_unloadable_llm_degrades_to_extractive_and_says_why(tmp_path):
    client = _client(tmp_path, {"backend": "transformers", "model": str(tmp_path / "no-such-model")})
    health = client.get("/healthz").get_json()
    assert health["status"] == "degraded"
    assert health["models"]["llm"]["mode"] == "extractive only"
    assert "no-such-model" in health["models"]["llm"]["fallback_reason"]
    body = client.post("/api/ask", json={"text": "Не работает VPN"}).get_json()
    assert body["composed"]["mode"] == "extractive"
