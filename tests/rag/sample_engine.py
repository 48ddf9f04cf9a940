"""The answer engine on the project's sample knowledge base with the real USE encoder, built once per
test session (about 30-40 s on two CPU cores). Import the fixture into a test module to use it."""

from __future__ import annotations

import pytest

from dataset import SAMPLE_KB
from dataset.importers import read_kb
from rag.embeddings import USEEmbedder
from rag.engine import Engine, EngineConfig


@pytest.fixture(scope="session")
def sample_engine(tmp_path_factory: pytest.TempPathFactory, use_embedder: USEEmbedder) -> Engine:
    engine = Engine(EngineConfig(data_dir=tmp_path_factory.mktemp("sample-engine")), use_embedder)
    engine.import_entries(read_kb(SAMPLE_KB).entries)
    return engine
