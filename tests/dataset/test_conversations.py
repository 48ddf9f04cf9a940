"""The team's conversation sets: their size and shape, and the loader's errors naming the mistake."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from dataset.conversations import (
    CONVERSATIONS_YAML,
    ConversationSetError,
    load_conversations,
    parse_conversations,
    sample_answers,
)

HELDOUT = CONVERSATIONS_YAML.with_name("conversations_sample_kb_heldout.yaml")


def test_the_development_set_has_forty_conversations_whose_followups_need_the_context() -> None:
    conversations = load_conversations()
    needing = [c for c in conversations if any(t.kind not in ("first", "new") for t in c.turns)]
    assert len(needing) >= 40
    assert all(2 <= len(c.turns) <= 3 for c in conversations)
    kinds = Counter(t.kind for c in conversations for t in c.turns)
    assert kinds["not_helped"] >= 5 and kinds["ellipsis"] >= 20 and kinds["refers_back"] >= 10
    # Every expected answer is an answer of the sample knowledge base.
    answers = set(sample_answers().values())
    assert all(a in answers for c in conversations for t in c.turns for a in t.expected_answers)


def test_the_heldout_set_loads_and_shares_no_conversation_with_the_development_set() -> None:
    heldout = load_conversations(HELDOUT)
    development = load_conversations()
    assert len(heldout) == 15
    assert not {c.id for c in development} & {c.id for c in heldout}
    # No opening question is reused ("не помогло" may of course be said in both).
    assert not {c.turns[0].say for c in development} & {c.turns[0].say for c in heldout}


def _doc(**turn: Any) -> dict[str, Any]:
    first = {"say": "Как подключить принтер?", "expect": ["REQ0004323"], "kind": "first"}
    second = {"say": "а под линуксом?", "expect": ["REQ0009200"], "kind": "ellipsis", **turn}
    return {"conversations": [{"id": "c1", "turns": [first, second]}]}


@pytest.mark.parametrize(("change", "words"), [
    ({"expect": ["REQ9999999"]}, "conversation 'c1', turn 2.expect: REQ9999999 not in the sample knowledge base"),
    ({"expect": []}, "turn 2.expect: expected a non-empty list"),
    ({"kind": "weird"}, "turn 2.kind: 'weird' is not one of"),
    ({"kind": "first"}, "the first turn, and only it"),
    ({"say": " "}, "turn 2.say"),
    ({"extra": 1}, "turn 2: unknown keys ['extra']"),
])
def test_mistakes_are_named(change: dict[str, Any], words: str) -> None:
    with pytest.raises(ConversationSetError, match=words.replace("[", r"\[").replace("]", r"\]")):
        parse_conversations(_doc(**change), sample_answers())


def test_document_level_mistakes(tmp_path: Path) -> None:
    answers = sample_answers()
    with pytest.raises(ConversationSetError, match="one key, 'conversations'"):
        parse_conversations({"x": []}, answers)
    doc = _doc()
    doc["conversations"].append(doc["conversations"][0])
    with pytest.raises(ConversationSetError, match="the id is used twice"):
        parse_conversations(doc, answers)
    bad = tmp_path / "bad.yaml"
    bad.write_text("conversations: [\n", encoding="utf-8")
    with pytest.raises(ConversationSetError, match="not valid YAML"):
        load_conversations(bad, answers)
    with pytest.raises(ConversationSetError, match="cannot read"):
        load_conversations(tmp_path / "missing.yaml", answers)
