"""The Chroma vector store, embedded (PersistentClient in a temporary directory)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.errors import IndexMismatchError
from rag.store import VectorStore, VectorStoreConfig


def unit(*values: float) -> np.ndarray:
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


VECTORS = np.stack([unit(1, 0, 0, 0), unit(0, 1, 0, 0), unit(1, 1, 0, 0), unit(0, 0, 1, 0)])
IDS = ["a", "b", "ab", "c"]
META = [
    {"answer_id": "A", "cat1": "VPN"},
    {"answer_id": "B", "cat1": "Печать"},
    {"answer_id": "A", "cat1": "VPN"},
    {"answer_id": "C", "cat1": ""},
]


@pytest.fixture
def store(tmp_path: Path) -> VectorStore:
    s = VectorStore(VectorStoreConfig(path=tmp_path / "chroma"))
    s.upsert("q", IDS, VECTORS, META)
    return s


def test_query_ranks_by_cosine_similarity(store: VectorStore) -> None:
    hits = store.query("q", unit(1, 0.1, 0, 0), 10)
    assert [h.id for h in hits] == ["a", "ab", "b", "c"]
    assert hits[0].similarity == pytest.approx(float(unit(1, 0.1, 0, 0) @ VECTORS[0]), abs=1e-4)
    assert hits[-1].similarity == pytest.approx(0.0, abs=1e-4)
    assert dict(hits[0].metadata) == META[0]
    assert len(store.query("q", unit(1, 0, 0, 0), 2)) == 2


def test_metadata_filter(store: VectorStore) -> None:
    hits = store.query("q", unit(0, 1, 0, 0), 10, where={"cat1": "VPN"})
    assert [h.id for h in hits] == ["ab", "a"]
    assert store.query("q", unit(0, 1, 0, 0), 10, where={"cat1": "нет такой"}) == []


def test_kinds_are_separate_collections(store: VectorStore) -> None:
    assert store.count("q") == 4
    assert store.count("qa") == 0
    assert store.query("qa", unit(1, 0, 0, 0), 5) == []
    store.upsert("learned", ["l1"], VECTORS[:1], [{"answer_id": "A", "polarity": -1}])
    (hit,) = store.query("learned", unit(1, 0, 0, 0), 5)
    assert (hit.id, hit.metadata["polarity"]) == ("l1", -1)


def test_upsert_replaces_and_delete_removes(store: VectorStore) -> None:
    store.upsert("q", ["c"], unit(1, 0, 0, 0)[None, :], [{"answer_id": "C2", "cat1": "VPN"}])
    assert store.count("q") == 4
    top = store.query("q", unit(1, 0, 0, 0), 2)
    assert {h.id for h in top} == {"a", "c"}
    assert {h.metadata["answer_id"] for h in top} == {"A", "C2"}

    store.delete("q", ["a", "c"])
    store.delete("q", [])
    assert store.ids("q") == {"b", "ab"}
    assert store.query("q", unit(1, 0, 0, 0), 10)[0].id == "ab"


def test_vectors_persist(store: VectorStore, tmp_path: Path) -> None:
    reopened = VectorStore(VectorStoreConfig(path=tmp_path / "chroma"))
    assert reopened.ids("q") == set(IDS)
    assert reopened.query("q", unit(0, 0, 1, 0), 1)[0].id == "c"


def test_ensure_model_refuses_another_model(store: VectorStore, tmp_path: Path) -> None:
    assert store.model_of("q") is None
    store.ensure_model("hashing:4", 4)
    store.ensure_model("hashing:4", 4)  # the same model again is fine
    assert store.model_of("q") == store.model_of("learned") == "hashing:4"
    with pytest.raises(IndexMismatchError, match=r"'hashing:4'.*'other:4'.*helpdesk-assist kb reindex"):
        store.ensure_model("other:4", 4)
    reopened = VectorStore(VectorStoreConfig(path=tmp_path / "chroma"))
    with pytest.raises(IndexMismatchError):
        reopened.ensure_model("other:4", 4)


def test_reset_drops_vectors_and_the_model(store: VectorStore) -> None:
    store.ensure_model("hashing:4", 4)
    store.reset()
    assert store.count("q") == 0
    assert store.model_of("q") is None
    store.ensure_model("other:8", 8)
    assert store.model_of("qa") == "other:8"
    store.upsert("q", ["x"], np.ones((1, 8), dtype=np.float32) / np.sqrt(8), [{"answer_id": "X"}])
    assert store.query("q", np.ones(8, dtype=np.float32) / np.sqrt(8), 3)[0].id == "x"


def test_upsert_of_nothing_is_a_no_op(tmp_path: Path) -> None:
    s = VectorStore(VectorStoreConfig(path=tmp_path / "chroma"))
    s.upsert("q", [], np.zeros((0, 4), dtype=np.float32), [])
    assert s.count("q") == 0
    assert s.ids("q") == set()


def _clustered(n: int, seed: int) -> np.ndarray:
    """Unit vectors in 30 loose clusters, the way sentence embeddings of a knowledge base crowd together."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(30, 64))
    x = centers[rng.integers(0, 30, n)] + 0.8 * rng.normal(size=(n, 64))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_the_fifty_nearest_are_the_exact_fifty_nearest(tmp_path: Path) -> None:
    """The fusion reads each dense signal's 50 nearest entries: the approximate (HNSW) search has to return
    the exact ones, or two indexes of the same data rank a request differently (Chroma's default search
    breadth missed about 1 in 100 here, differently on each build)."""
    x = _clustered(800, seed=1)
    s = VectorStore(VectorStoreConfig(path=tmp_path / "chroma"))
    s.upsert("q", [str(i) for i in range(len(x))], x, [{"answer_id": str(i)} for i in range(len(x))])
    queries = _clustered(120, seed=2)
    for q in queries:
        exact = np.argsort(-(x @ q), kind="stable")[:50]
        got = [h.id for h in s.query("q", q, 50)]
        assert set(got) == {str(i) for i in exact}


def test_an_index_made_by_an_earlier_version_is_searched_as_widely(tmp_path: Path) -> None:
    import chromadb
    from chromadb.config import Settings

    from rag.store import EF_SEARCH

    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"), settings=Settings(anonymized_telemetry=False))
    client.create_collection("helpdesk_kb_q", embedding_function=None, configuration={"hnsw": {"space": "cosine"}})
    assert client.get_collection("helpdesk_kb_q").configuration["hnsw"]["ef_search"] < EF_SEARCH
    s = VectorStore(VectorStoreConfig(path=tmp_path / "chroma"))
    assert s.count("q") == 0
    reopened = chromadb.PersistentClient(path=str(tmp_path / "chroma"), settings=Settings(anonymized_telemetry=False))
    assert reopened.get_collection("helpdesk_kb_q").configuration["hnsw"]["ef_search"] == EF_SEARCH
    assert reopened.get_collection("helpdesk_kb_q").configuration["hnsw"]["space"] == "cosine"


def test_clear_empties_one_kind_and_keeps_its_model(store: VectorStore) -> None:
    store.ensure_model("hashing:4", 4)
    store.upsert("learned", ["l1", "l2"], VECTORS[:2], [{"answer_id": "A"}, {"answer_id": "B"}])
    store.clear("learned")
    assert store.count("learned") == 0
    assert store.query("learned", unit(1, 0, 0, 0), 5) == []
    assert store.model_of("learned") == "hashing:4"  # ensure_model still refuses another model
    assert store.count("q") == len(IDS)  # the other kinds are untouched
    store.upsert("learned", ["l3"], VECTORS[:1], [{"answer_id": "A"}])
    assert [h.id for h in store.query("learned", unit(1, 0, 0, 0), 5)] == ["l3"]
