"""vector_store.mode: http — the same engine against a real Chroma server (`chroma run`) on loopback."""

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from rag.embeddings import HashingEmbedder
from rag.engine import Engine, EngineConfig
from rag.models import KBEntry
from rag.store import VectorStoreConfig

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ENTRIES = [
    KBEntry(id="vpn", question="Не подключается VPN из дома", answer="Перезапустите AnyConnect.", categories=("VPN",)),
    KBEntry(id="pwd", question="Забыл пароль от учетной записи", answer="Сбросьте пароль на портале.",
            categories=("Учетные записи",)),
    KBEntry(id="prn", question="Принтер не печатает", answer="Очистите очередь печати.", categories=("Принтеры",)),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    exe = Path(sys.executable).with_name("chroma")
    if not exe.exists():
        exe = Path(shutil.which("chroma") or "")
    if not exe.is_file():
        pytest.skip("the `chroma` server command (from the chromadb package) is not installed")
    port = _free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    proc = subprocess.Popen(
        [str(exe), "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with requests.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1) as r:
                    if r.ok:
                        break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chroma server did not start (exit code {proc.poll()})")
            time.sleep(0.3)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_engine_works_against_a_chroma_server(chroma_server, tmp_path):
    config = EngineConfig(
        data_dir=tmp_path,
        vector_store=VectorStoreConfig(mode="http", host="127.0.0.1", port=chroma_server, collection="hd_test"),
    )
    engine = Engine(config, HashingEmbedder())
    report = engine.import_entries(ENTRIES)
    assert report.imported == 3
    assert engine.vectors.count("q") == 3  # the vectors went to the server, not to tmp_path
    assert not (tmp_path / "chroma").exists()
    hits, category = engine.search("VPN не подключается", top_k=2)
    assert hits[0].entry_id == "vpn"
    assert category.levels[0] == "VPN"
    only_printers, _ = engine.search("не печатает", category="Принтеры")
    assert {h.entry_id for h in only_printers} == {"prn"}


def test_unreachable_server_is_a_clear_error(tmp_path):
    from rag.errors import RagError

    config = EngineConfig(data_dir=tmp_path, vector_store=VectorStoreConfig(mode="http", port=_free_port()))
    with pytest.raises(RagError, match="cannot open the Chroma vector store"):
        Engine(config, HashingEmbedder())
