"""The team's conversations replayed through the chat service, as a person would see them (a measurement,
not a test: it asserts nothing).

``bench/bench_followup.py`` measures the memory itself (``resolve_followup``: the first answer found).
This replays the same sets through :class:`plugin.service.chat.ChatService`, which adds what the chat does
on top: a clarifying question when the best answers are close, "an agent will help" when a first message
is not sure, the answers of "не помогло" set aside for good. Each reply is counted as: the right answer
(its first source is one of the turn's expected answers), another answer, a clarifying question, or the
hand-off. "Without memory": every message is sent as the first message of a new conversation.

    PYTHONPATH=. .venv/bin/python bench/bench_chat_followups.py --out bench/results/chat_followups.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dataset import SAMPLE_KB  # noqa: E402
from dataset.conversations import CONVERSATIONS_YAML, load_conversations  # noqa: E402
from dataset.importers import read_kb  # noqa: E402
from plugin.service.chat import ChatService  # noqa: E402
from plugin.service.links import LinkSigner  # noqa: E402
from plugin.service.tickets import Pipeline  # noqa: E402
from plugin.settings import load_settings  # noqa: E402
from plugin.store import Store  # noqa: E402
from rag.embeddings import USEEmbedder  # noqa: E402
from rag.engine import Engine, EngineConfig  # noqa: E402
from rag.text import normalize_for_match  # noqa: E402

HELDOUT_YAML = CONVERSATIONS_YAML.with_name("conversations_sample_kb_heldout.yaml")


def outcome(turn: Any, expected: tuple[str, ...]) -> str:
    if turn.reply == "clarify":
        return "question"
    if turn.reply == "handoff":
        return "hand-off"
    gold = {normalize_for_match(a) for a in expected}
    right = bool(turn.sources) and normalize_for_match(turn.sources[0].answer) in gold
    return "right" if right else "other answer"


def replay(chat: ChatService, conversations: list[Any], *, memory: bool) -> dict[str, Any]:
    first: Counter[str] = Counter()
    follow: Counter[str] = Counter()
    by_kind: dict[str, Counter[str]] = {}
    for n, conv in enumerate(conversations):
        owner = f"bench:{memory}:{n}"
        conv_id = ""
        for i, turn in enumerate(conv.turns):
            if i == 0 or not memory:
                c = chat.start(owner, turn.say)
            else:
                c = chat.send(owner, conv_id, turn.say)
            conv_id = c.id
            got = outcome(c.turns[-1], turn.expected_answers)
            (follow if i else first)[got] += 1
            if i:
                by_kind.setdefault(turn.kind, Counter())[got] += 1
    return {"first_turns": dict(first), "follow_ups": dict(follow),
            "follow_ups_by_kind": {k: dict(v) for k, v in sorted(by_kind.items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    sets = {"development": load_conversations(), "held-out": load_conversations(HELDOUT_YAML)}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(EngineConfig(data_dir=Path(tmp) / "engine"), USEEmbedder())
        engine.import_entries(read_kb(SAMPLE_KB).entries)
        settings = load_settings(env={}, data_dir=tmp, chat={"messages_per_minute": 100_000})
        store = Store.open(Path(tmp) / "state.sqlite3")
        chat = ChatService(settings, engine, store, Pipeline(settings, engine, store, {},
                                                             LinkSigner("b" * 32, 86_400, "http://x")), None)
        for name, conversations in sets.items():
            results[name] = {"conversations": len(conversations),
                             "memory": replay(chat, conversations, memory=True),
                             "no memory": replay(chat, conversations, memory=False)}
            print(json.dumps({name: results[name]}, ensure_ascii=False, indent=1), flush=True)
    if args.out:
        report = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
                  "threshold": settings.decision.threshold, "results": results}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
