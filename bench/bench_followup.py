"""Conversation memory on the team's conversation sets (a measurement, not a test: it asserts nothing).

Builds the answer engine on the sample knowledge base (``dataset/sample_kb.xlsx``, the bundled
multilingual USE encoder) and replays the conversations of ``dataset/conversations_sample_kb.yaml``
(the development set: the rules of ``rag/followup.py`` were adjusted while looking at it) and of
``dataset/conversations_sample_kb_heldout.yaml`` (written after the rules were frozen, never used to
adjust them) in four ways:

* ``no memory``: every message searched alone (a search box);
* ``max confidence``: the message alone and with the previous request in front, whichever
  retrieves with more confidence (the simplest memory, :func:`rag.followup_eval.resolve_by_confidence`);
* ``memory``: :func:`rag.followup.resolve_followup` without an LLM;
* ``memory + tiny Qwen``: the same with the tiny random Qwen2 of ``tests/rag/llm/tiny_qwen.py``
  rewriting each follow-up through the real transformers backend. Its weights are random, so this
  exercises the code path (prompt, generation, checks, fallback with a reason); it says nothing about
  what a real model's rewrites would be worth.

A follow-up is right when the first answer given is one of its expected answers. Run from the
repository root::

    PYTHONPATH=. .venv/bin/python bench/bench_followup.py --out bench/results/followup.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dataset import SAMPLE_KB  # noqa: E402
from dataset.conversations import CONVERSATIONS_YAML, load_conversations  # noqa: E402
from dataset.importers import read_kb  # noqa: E402
from rag.embeddings import USEEmbedder  # noqa: E402
from rag.engine import Engine, EngineConfig  # noqa: E402
from rag.followup_eval import ConversationReport, evaluate_conversations, resolve_by_confidence  # noqa: E402

HELDOUT_YAML = CONVERSATIONS_YAML.with_name("conversations_sample_kb_heldout.yaml")


def summary(report: ConversationReport) -> dict[str, Any]:
    lat = [t.latency_s for t in report.turns if t.turn > 1]
    return {
        "followups": report.followups,
        "followups_right": report.followups_right,
        "followup_accuracy": round(report.followup_accuracy, 3),
        "followups_right_and_confident": report.followups_answered_right,
        "first_right": f"{report.first_right}/{report.first_turns}",
        "new_questions_right": f"{report.new_right}/{report.new_questions}",
        "by_kind": {k: f"{r}/{n}" for k, (r, n) in report.by_kind.items()},
        "methods": report.methods,
        "fallback_reasons": report.fallback_reasons,
        "latency_s_p50": round(float(np.percentile(lat, 50)), 3) if lat else None,
        "latency_s_p95": round(float(np.percentile(lat, 95)), 3) if lat else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "followup.json")
    parser.add_argument("--no-llm", action="store_true", help="skip the tiny Qwen run")
    args = parser.parse_args()

    sets = {"development": load_conversations(CONVERSATIONS_YAML), "held-out": load_conversations(HELDOUT_YAML)}
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        engine = Engine(EngineConfig(data_dir=Path(tmp) / "engine"), USEEmbedder())
        engine.import_entries(read_kb(SAMPLE_KB).entries)
        build_s = time.monotonic() - started
        llm = None
        if not args.no_llm:
            from rag.llm.transformers_backend import TransformersLLM
            from tests.rag.llm.tiny_qwen import build_tiny_qwen

            llm = TransformersLLM(str(build_tiny_qwen(Path(tmp) / "tiny-qwen", seed=0)))
            llm.load()
        results: dict[str, dict[str, Any]] = {}
        for name, conversations in sets.items():
            runs = {
                "no memory": evaluate_conversations(engine, conversations, memory=False),
                "max confidence": evaluate_conversations(engine, conversations, resolver=resolve_by_confidence,
                                                         mode="max confidence"),
                "memory": evaluate_conversations(engine, conversations),
            }
            if llm is not None:
                runs["memory + tiny Qwen"] = evaluate_conversations(
                    engine, conversations, llm=llm, llm_options={"timeout_s": 30.0, "max_new_tokens": 48},
                    mode="memory + tiny Qwen")
            results[name] = {"conversations": len(conversations), **{m: summary(r) for m, r in runs.items()}}
            print(f"\n{name}: {len(conversations)} conversations, {runs['memory'].followups} follow-ups")
            print(f"{'method':22} {'right':>7} {'share':>6} {'confident':>9}  by kind")
            for mode, r in runs.items():
                kinds = ", ".join(f"{k} {a}/{b}" for k, (a, b) in r.by_kind.items() if k != "first")
                print(f"{mode:22} {r.followups_right:>3}/{r.followups:<3} {r.followup_accuracy:>6.1%} "
                      f"{r.followups_answered_right:>9}  {kinds}")
                if r.fallback_reasons:
                    print(f"{'':22} LLM rewrites not used: {r.fallback_reasons}")
    record = {
        "benchmark": "followup",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_start": load_start,
                    "load_end": os.getloadavg()},
        "engine": {"knowledge_base": "dataset/sample_kb.xlsx", "embedder": engine.embedder.name,
                   "threshold": engine.config.policy.threshold, "build_s": round(build_s, 1)},
        "sets": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
