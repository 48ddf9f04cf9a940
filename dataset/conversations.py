"""The team's conversation test set on the sample knowledge base (``conversations_sample_kb.yaml``).

Each conversation is two or three things an employee typed into the chat; each turn names the
knowledge-base entries (by their ``code`` in ``sample_kb.yaml``) whose answer is right for it.
Loading checks every field and names the conversation, turn and field of a mistake, and resolves
the codes to answer texts, so that the harness (:mod:`rag.followup_eval`) compares answers the
same way :mod:`rag.eval` does (entries sharing a templated answer count alike).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict

from dataset.build_sample_kb import load_sample_kb
from helpdesk_errors import HelpdeskError

CONVERSATIONS_YAML = Path(__file__).with_name("conversations_sample_kb.yaml")

TurnKind = Literal["first", "ellipsis", "refers_back", "not_helped", "new"]
KINDS: tuple[str, ...] = ("first", "ellipsis", "refers_back", "not_helped", "new")


class ConversationSetError(HelpdeskError):
    """The conversation set is malformed (the message names the conversation, turn and field)."""


class ConversationTurn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    say: str
    kind: TurnKind
    #: Codes of the entries whose answer is right.
    expect: tuple[str, ...]
    #: Their answer texts (resolved from the sample knowledge base).
    expected_answers: tuple[str, ...]


class Conversation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    turns: tuple[ConversationTurn, ...]


def _turn(raw: object, where: str, answers: Mapping[str, str]) -> ConversationTurn:
    if not isinstance(raw, dict):
        raise ConversationSetError(f"{where}: expected a mapping with say, expect and kind")
    unknown = set(raw) - {"say", "expect", "kind"}
    if unknown:
        raise ConversationSetError(f"{where}: unknown keys {sorted(unknown)}; allowed: expect, kind, say")
    say = raw.get("say")
    if not isinstance(say, str) or not say.strip():
        raise ConversationSetError(f"{where}.say: expected the text the employee typed")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ConversationSetError(f"{where}.kind: {kind!r} is not one of {', '.join(KINDS)}")
    expect = raw.get("expect")
    if not isinstance(expect, list) or not expect or not all(isinstance(c, str) for c in expect):
        raise ConversationSetError(f"{where}.expect: expected a non-empty list of entry codes")
    missing = [c for c in expect if c not in answers]
    if missing:
        raise ConversationSetError(f"{where}.expect: {', '.join(missing)} not in the sample knowledge base")
    return ConversationTurn(say=say.strip(), kind=kind, expect=tuple(expect),
                            expected_answers=tuple(dict.fromkeys(answers[c] for c in expect)))


def parse_conversations(data: object, answers: Mapping[str, str]) -> list[Conversation]:
    """Validate a loaded YAML document; ``answers`` maps entry codes to answer texts."""
    if not isinstance(data, dict) or set(data) != {"conversations"}:
        raise ConversationSetError("the document must be a mapping with one key, 'conversations'")
    raw_list = data["conversations"]
    if not isinstance(raw_list, list) or not raw_list:
        raise ConversationSetError("conversations: expected a non-empty list")
    out: list[Conversation] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_list):
        where = f"conversations[{i}]"
        if not isinstance(raw, dict):
            raise ConversationSetError(f"{where}: expected a mapping with id and turns")
        cid = raw.get("id")
        if not isinstance(cid, str) or not cid.strip():
            raise ConversationSetError(f"{where}.id: expected a name")
        where = f"conversation {cid!r}"
        if cid in seen:
            raise ConversationSetError(f"{where}: the id is used twice")
        seen.add(cid)
        unknown = set(raw) - {"id", "turns"}
        if unknown:
            raise ConversationSetError(f"{where}: unknown keys {sorted(unknown)}; allowed: id, turns")
        turns = raw.get("turns")
        if not isinstance(turns, list) or not 2 <= len(turns) <= 3:
            raise ConversationSetError(f"{where}.turns: expected two or three turns")
        parsed = tuple(_turn(t, f"{where}, turn {n}", answers) for n, t in enumerate(turns, start=1))
        if parsed[0].kind != "first" or any(t.kind == "first" for t in parsed[1:]):
            raise ConversationSetError(f"{where}: the first turn, and only it, must have kind 'first'")
        out.append(Conversation(id=cid, turns=parsed))
    return out


def sample_answers() -> dict[str, str]:
    """Entry code -> answer text of the sample knowledge base."""
    return {row.code: row.solution for row in load_sample_kb().rows}


def load_conversations(path: Path | str = CONVERSATIONS_YAML, answers: Mapping[str, str] | None = None,
                       ) -> list[Conversation]:
    """The conversation set; raises :class:`ConversationSetError` naming what is wrong."""
    try:
        data: Any = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConversationSetError(f"cannot read {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise ConversationSetError(f"{path} is not valid YAML: {e}") from e
    return parse_conversations(data, answers if answers is not None else sample_answers())
