"""``helpdesk-assist eval``: quality on labelled requests, in a temporary index built with the configured
models (the configured knowledge base is never touched) — as is, after learning from a file of
confirmed pairs, or by k-fold cross-validation of everything learned from the cases."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from plugin.service.engines import engine_config, load_configured_embedder
from plugin.settings import Settings
from rag.embeddings import CachedEmbedder, LoadedEmbedder
from rag.engine import Engine
from rag.eval import (
    FOLD_SEED,
    Case,
    coverage_at_precision,
    cross_validate,
    evaluate,
    prepare_from_pairs,
    reliability,
)
from rag.models import KBEntry

log = logging.getLogger(__name__)


def run_eval(
    settings: Settings,
    entries: Sequence[KBEntry],
    cases: Sequence[Case],
    *,
    learning: Sequence[Case] | None = None,
    learning_name: str = "",
    folds: int | None = None,
    fold_seed: int = FOLD_SEED,
    threshold: float | None = None,
    targets: Sequence[float] = (0.85, 0.90),
    embedding_cache: Path | None = None,
) -> tuple[dict[str, Any], str]:
    """The metrics (see :func:`rag.eval.summarize`, plus ``at_precision`` and ``reliability``) and the
    name of the embedding model. ValueError for impossible fold counts."""
    loaded = load_configured_embedder(settings)
    cached = CachedEmbedder(loaded.embedder, embedding_cache)
    tmp = Path(tempfile.mkdtemp(prefix="helpdesk-assist-eval-"))
    try:
        config = engine_config(settings, tmp)
        if config.vector_store is not None:
            config.vector_store = type(config.vector_store)(mode="embedded", path=tmp / "chroma")
        engine = Engine(config, LoadedEmbedder(cached, loaded.requested, loaded.fallback_reason))
        engine.import_entries(entries, progress=True)
        if folds is not None:
            metrics, _ = cross_validate(
                engine, cases, folds=folds, threshold=threshold, targets=targets, seed=fold_seed, progress=True
            )
        else:
            if learning is not None:
                trained = prepare_from_pairs(
                    engine, learning, fitted_on=learning_name or "learning file", progress=True
                )
                log.info("eval: learned %s", trained)
            bar = engine.default_threshold() if threshold is None else threshold
            metrics, results = evaluate(engine, cases, threshold=bar, progress=True)
            metrics["at_precision"] = [coverage_at_precision(results, t) for t in targets]
            metrics["reliability"] = reliability(results)
        cached.save()
        return metrics, cached.name
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
