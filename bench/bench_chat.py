"""Time to the answer of a chat turn, through the real app over HTTP (a measurement: it asserts nothing).

The service is built as ``serve`` builds it (the sample knowledge base, the bundled USE encoder) and put
on a threaded werkzeug server; ``users`` threads replay the team's conversations
(``dataset/conversations_sample_kb.yaml``) through the JSON API (``POST /api/chat/conversations``, then
``POST .../messages`` for each follow-up), each conversation by one user, and the time from sending a
message to the whole answer (a chat turn's JSON) is recorded. Two backends: extractive (no LLM) and the
tiny random Qwen2 of ``tests/rag/llm/tiny_qwen.py`` through the real transformers backend (rewrite of
follow-ups + composed answer: it exercises the code path and its cost on this CPU; a real Qwen costs
more). The answer is not streamed (the LLM backends have no streaming call yet), so "first answer" is
the whole answer. Run from the repository root::

    PYTHONPATH=. .venv/bin/python bench/bench_chat.py --out bench/results/chat.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from werkzeug.serving import make_server  # noqa: E402

from dataset.conversations import load_conversations  # noqa: E402
from plugin.settings import load_settings  # noqa: E402
from plugin.web.app import create_app  # noqa: E402
from plugin.wiring import build_services, ensure_knowledge_base  # noqa: E402
from rag.embeddings import USEEmbedder  # noqa: E402

KEY = "bench-chat-api-key-0123456789abcdef"


def run(base: str, conversations: list[Any], users: int) -> dict[str, Any]:
    work: queue.Queue[Any] = queue.Queue()
    for c in conversations:
        work.put(c)
    first: list[float] = []
    follow: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def user(n: int) -> None:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {KEY}", "X-Chat-User": f"bench-user-{n}"}
        while True:
            try:
                conv = work.get_nowait()
            except queue.Empty:
                return
            conv_id = ""
            for i, turn in enumerate(conv.turns):
                url = f"{base}/api/chat/conversations" + (f"/{conv_id}/messages" if i else "")
                started = time.perf_counter()
                r = session.post(url, json={"text": turn.say}, headers=headers, timeout=300)
                took = time.perf_counter() - started
                if r.status_code not in (200, 201):
                    with lock:
                        errors.append(f"{r.status_code} {r.text[:120]}")
                    break
                conv_id = r.json()["id"]
                with lock:
                    (follow if i else first).append(took)

    threads = [threading.Thread(target=user, args=(n,)) for n in range(users)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started

    def stats(xs: list[float]) -> dict[str, float]:
        return {"n": len(xs), "p50_s": round(float(np.percentile(xs, 50)), 3) if xs else 0.0,
                "p95_s": round(float(np.percentile(xs, 95)), 3) if xs else 0.0}

    every = first + follow
    return {"users": users, "conversations": len(conversations), "all_turns": stats(every),
            "first_turns": stats(first), "follow_ups": stats(follow), "wall_s": round(wall, 1),
            "turns_per_s": round(len(every) / wall, 2) if wall else 0.0, "errors": errors[:5]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=16, help="conversations per run (default 16)")
    parser.add_argument("--no-llm", action="store_true", help="skip the tiny Qwen runs")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    conversations = load_conversations()[: args.conversations]
    embedder = USEEmbedder()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        backends: list[tuple[str, dict[str, Any]]] = [("extractive", {"backend": "none"})]
        if not args.no_llm:
            from tests.rag.llm.tiny_qwen import build_tiny_qwen

            path = build_tiny_qwen(Path(tmp) / "tiny-qwen", seed=0)
            backends.append(("tiny Qwen (transformers, CPU)", {"backend": "transformers", "model": str(path),
                                                                "max_new_tokens": 64, "timeout_s": 60}))
        for name, llm in backends:
            settings = load_settings(
                env={}, data_dir=str(Path(tmp) / "data"), api={"keys": [KEY], "max_concurrent_asks": 8},
                llm=llm, chat={"messages_per_minute": 10_000, "ip_messages_per_minute": 100_000},
                worker={"embedded": False},
            )
            built = time.perf_counter()
            services = build_services(settings, embedder=embedder)
            ensure_knowledge_base(services)
            build_s = time.perf_counter() - built
            if services.llm_fallback_reason:
                raise SystemExit(f"{name}: the LLM did not load: {services.llm_fallback_reason}")
            server = make_server("127.0.0.1", 0, create_app(settings, services=services), threaded=True)
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            base = f"http://127.0.0.1:{server.server_port}"
            try:
                run(base, conversations[:2], 1)  # warm-up (models, caches), not counted
                results[name] = {"build_s": round(build_s, 1),
                                 "runs": [run(base, conversations, users) for users in (1, 8)]}
            finally:
                server.shutdown()
                server.server_close()
            print(json.dumps({name: results[name]}, ensure_ascii=False, indent=1), flush=True)
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "load_avg": [round(x, 1) for x in os.getloadavg()],
                    "python": platform.python_version()},
        "note": "whole answer (no streaming); 1 and 8 users replaying the team's conversations over HTTP",
        "results": results,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
