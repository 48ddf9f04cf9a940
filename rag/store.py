"""Vectors in Chroma: embedded ``PersistentClient`` by default, a Chroma server by configuration.

One collection per kind of key: ``<name>_q`` (entry questions), ``<name>_qa`` (question + answer),
``<name>_learned`` (confirmed and rejected requests). Embeddings are always passed explicitly (Chroma's
default embedding function would try to download a model), telemetry is off, and every collection
records which embedding model built it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rag.errors import IndexMismatchError, RagError

log = logging.getLogger(__name__)

Kind = Literal["q", "qa", "learned"]
KINDS: tuple[Kind, ...] = ("q", "qa", "learned")
Metadata = Mapping[str, str | int | float | bool]

#: How widely Chroma's HNSW graph is searched. At Chroma's default (100) a query for the 50 nearest entries
#: missed about one in a hundred of them on a knowledge base of a few hundred entries, and which ones
#: changed from index to index: the graph is built in parallel, so two indexes of the same data differ,
#: and `eval` on the same cases gave hit@1 0.611–0.621 and coverage 0.484–0.501 from run to run. At 500
#: (with :meth:`VectorStore.clear` for forgetting every learned request) two runs agree on every number;
#: it cost about 2 ms per query on 20,000 synthetic vectors (docs/answer-quality-passes.md, "Sixth pass").
EF_SEARCH = 500
#: How carefully the graph is built (Chroma's default 100); applies to collections created from now on.
EF_CONSTRUCTION = 200


@dataclass(frozen=True)
class VectorStoreConfig:
    mode: Literal["embedded", "http"] = "embedded"
    path: Path = Path("var/chroma")
    host: str = "127.0.0.1"
    port: int = 8000
    ssl: bool = False
    collection: str = "helpdesk_kb"


@dataclass(frozen=True)
class VectorHit:
    id: str
    similarity: float
    metadata: Mapping[str, Any]


class VectorStore:
    def __init__(self, config: VectorStoreConfig):
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        chroma_settings = ChromaSettings(anonymized_telemetry=False)
        try:
            if config.mode == "http":
                self._client = chromadb.HttpClient(
                    host=config.host, port=config.port, ssl=config.ssl, settings=chroma_settings
                )
            else:
                config.path.mkdir(parents=True, exist_ok=True)
                self._client = chromadb.PersistentClient(path=str(config.path), settings=chroma_settings)
        except Exception as e:
            where = f"{config.host}:{config.port}" if config.mode == "http" else str(config.path)
            raise RagError(f"cannot open the Chroma vector store ({config.mode}, {where}): {e}") from e
        self.config = config
        self._collections: dict[str, Any] = {}

    def _collection(self, kind: Kind) -> Any:
        if kind not in self._collections:
            col = self._client.get_or_create_collection(
                self._name(kind),
                embedding_function=None,
                configuration={"hnsw": {"space": "cosine", "ef_construction": EF_CONSTRUCTION,
                                        "ef_search": EF_SEARCH}},
            )
            hnsw = (col.configuration or {}).get("hnsw") or {}
            if int(hnsw.get("ef_search") or 0) < EF_SEARCH:  # made by an earlier version: search it as widely
                col.modify(configuration={"hnsw": {"ef_search": EF_SEARCH}})
            self._collections[kind] = col
        return self._collections[kind]

    def _name(self, kind: Kind) -> str:
        return f"{self.config.collection}_{kind}"

    def refresh(self) -> None:
        """Forget cached collection handles: another process may have rebuilt them (``kb reindex``)."""
        self._collections.clear()

    # -- which model built the index ------------------------------------------------------------------
    def model_of(self, kind: Kind = "q") -> str | None:
        meta = self._collection(kind).metadata or {}
        value = meta.get("embedding_model")
        return str(value) if value else None

    def ensure_model(self, model: str, dim: int) -> None:
        """Refuse to mix vectors of two models: the index records the model that built it."""
        for kind in KINDS:
            col = self._collection(kind)
            built_with = (col.metadata or {}).get("embedding_model")
            if built_with and built_with != model:
                raise IndexMismatchError(
                    f"the index was built with the embedding model {built_with!r}, but {model!r} is "
                    "configured now; run `helpdesk-assist kb reindex` to rebuild it with the configured model"
                )
            if not built_with:
                col.modify(metadata={"embedding_model": model, "dim": dim})

    # -- writes --------------------------------------------------------------------------------------
    def upsert(
        self, kind: Kind, ids: Sequence[str], vectors: np.ndarray, metadatas: Sequence[Metadata]
    ) -> None:
        if not ids:
            return
        col = self._collection(kind)
        step = 4000  # stay under Chroma's maximum batch size
        for start in range(0, len(ids), step):
            col.upsert(
                ids=list(ids[start : start + step]),
                embeddings=np.asarray(vectors[start : start + step], dtype=np.float32),
                metadatas=[dict(m) for m in metadatas[start : start + step]],
            )

    def delete(self, kind: Kind, ids: Sequence[str]) -> None:
        if ids:
            self._collection(kind).delete(ids=list(ids))

    def clear(self, kind: Kind) -> None:
        """Remove every vector of ``kind``: the collection is made again, empty, with the same metadata
        (deleting ids one by one leaves them in the HNSW graph as tombstones that searches still walk). Used when
        every learned request is forgotten (`eval` between its folds)."""
        metadata = dict(self._collection(kind).metadata or {})
        self._client.delete_collection(self._name(kind))
        self._collections.pop(kind, None)
        if metadata:
            self._collection(kind).modify(metadata=metadata)

    def reset(self) -> None:
        """Drop every collection (used by ``kb reindex``)."""
        for kind in KINDS:
            try:
                self._client.delete_collection(self._name(kind))
            except Exception:  # noqa: BLE001, S112 - absent collection: nothing to drop
                continue
        self._collections.clear()

    # -- reads ---------------------------------------------------------------------------------------
    def count(self, kind: Kind) -> int:
        return int(self._collection(kind).count())

    def ids(self, kind: Kind) -> set[str]:
        return set(self._collection(kind).get(include=[])["ids"])

    def vectors(self, kind: Kind) -> tuple[list[str], np.ndarray, list[Mapping[str, Any]]]:
        """Every id of ``kind`` with its vector and metadata (for training on what is indexed)."""
        got = self._collection(kind).get(include=["embeddings", "metadatas"])
        ids = list(got["ids"])
        embeddings = got.get("embeddings")
        vectors = np.asarray(embeddings if embeddings is not None and len(ids) else np.zeros((0, 0)), dtype=np.float32)
        return ids, vectors, [m or {} for m in (got.get("metadatas") or [{}] * len(ids))]

    def query(
        self, kind: Kind, vector: np.ndarray, n: int, where: Mapping[str, Any] | None = None
    ) -> list[VectorHit]:
        try:
            col = self._collection(kind)
            total = col.count()
            if total == 0:
                return []
            result = col.query(
                query_embeddings=np.asarray(vector, dtype=np.float32).reshape(1, -1),
                n_results=min(n, total),
                where=dict(where) if where else None,
                include=["distances", "metadatas"],
            )
        except Exception as e:  # chromadb errors have no common base worth naming; re-raised
            self.refresh()
            raise RagError(f"the vector store could not be queried ({kind}): {e}") from e
        ids = result["ids"][0]
        distances = (result.get("distances") or [[]])[0]
        metas = (result.get("metadatas") or [[]])[0]
        return [
            VectorHit(id=i, similarity=1.0 - float(d), metadata=m or {})
            for i, d, m in zip(ids, distances, metas, strict=True)
        ]
