"""Settings -> the answer engine: the embedding model (or its bundled fallback), the LLM (or none), and
the engine over ``<data_dir>``. Used by the wiring and by work that needs an engine of its own (the
evaluation and the replay run in a temporary data directory)."""

from __future__ import annotations

import logging
from pathlib import Path

from plugin import i18n
from plugin.service import policy
from plugin.settings import Settings
from rag.embeddings import Embedder, LoadedEmbedder, load_embedder
from rag.engine import Engine, EngineConfig
from rag.errors import ModelLoadError
from rag.llm import load_llm
from rag.llm.base import LLM
from rag.store import VectorStoreConfig

log = logging.getLogger(__name__)


def engine_config(settings: Settings, data_dir: Path | None = None) -> EngineConfig:
    root = data_dir or settings.data_dir
    vs = settings.vector_store
    return EngineConfig(
        data_dir=root,
        vector_store=VectorStoreConfig(
            mode=vs.mode, path=root / "chroma", host=vs.host, port=vs.port, ssl=vs.ssl, collection=vs.collection
        ),
        candidates=settings.retrieval.candidates,
        top_k=settings.retrieval.top_k,
        expand_jargon=settings.retrieval.expand_jargon,
        jargon=dict(settings.retrieval.jargon),
        policy=policy.from_settings(settings).decision,
        calibrate_at_import=settings.decision.calibrate_at_import,
        default_language=settings.default_language,
    )


def load_configured_embedder(settings: Settings) -> LoadedEmbedder:
    e = settings.embeddings
    return load_embedder(
        e.model, fallback=e.fallback, device=e.device, batch_size=e.batch_size, offline=settings.offline,
        query_prefix=e.query_prefix, passage_prefix=e.passage_prefix,
    )


def load_configured_llm(settings: Settings) -> tuple[LLM | None, str | None]:
    """The configured LLM, or (None, reason) when it cannot be loaded: answers are then extractive."""
    cfg = settings.llm
    if cfg.backend == "none":
        return None, None
    try:
        llm = load_llm(
            cfg.backend,
            model=cfg.model,
            base_url=cfg.base_url,
            api_key=cfg.api_key.get_secret_value(),
            device=cfg.device,
            timeout_s=cfg.timeout_s,
        )
    except ModelLoadError as e:
        log.warning("llm_unavailable: %s; ANSWERS WILL BE EXTRACTIVE (the entries themselves)", e)
        return None, str(e)
    return llm, None


def build_engine(
    settings: Settings, *, embedder: Embedder | LoadedEmbedder | None = None, data_dir: Path | None = None
) -> tuple[Engine, str | None]:
    """The engine, and why no LLM is in use although one is configured (None when it loaded or none
    is configured)."""
    loaded = embedder if embedder is not None else load_configured_embedder(settings)
    llm, llm_reason = load_configured_llm(settings)
    engine = Engine(
        engine_config(settings, data_dir),
        loaded,
        llm=llm,
        llm_options={
            "max_new_tokens": settings.llm.max_new_tokens,
            "temperature": settings.llm.temperature,
            "timeout_s": settings.llm.timeout_s,
        },
        words=i18n.words,
    )
    return engine, llm_reason
