"""How many follow-ups get the right answer, with conversation memory and without it.

Each conversation is replayed turn by turn as the chat would: the history holds what the system
itself searched and answered before (not the expected answers), and a "не помогло" turn marks the
previous answer rejected. A turn is right when the first answer given is one of its expected
answers (compared after case and whitespace normalization, as :mod:`rag.eval` does).

``memory=False`` searches every message alone (what a search box without memory does).
The conversations are any objects with ``id`` and ``turns`` (``say``, ``kind``,
``expected_answers``): ``dataset.conversations`` loads the team's set; ``rag`` imports nothing above it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from rag.followup import FollowUp, Method, PastTurn, QueryTried, answer_threshold, resolve_followup
from rag.llm.base import LLM
from rag.models import AnswerHit
from rag.text import normalize_for_match

log = logging.getLogger(__name__)


class EvalTurn(Protocol):
    @property
    def say(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def expected_answers(self) -> tuple[str, ...]: ...


class EvalConversation(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def turns(self) -> Sequence[EvalTurn]: ...


class TurnResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conversation: str
    turn: int
    kind: str
    method: str
    right: bool
    #: Right and confident enough for the engine to answer (at or above its threshold).
    answered_right: bool
    query: str
    #: The answer given first ("" when none).
    answer_id: str = ""
    fallback_reason: str = ""
    latency_s: float = 0.0


class ConversationReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: str
    conversations: int
    #: Turns after the first that need the conversation (kinds other than "first" and "new").
    followups: int
    followups_right: int
    followups_answered_right: int
    first_turns: int
    first_right: int
    #: New, self-contained questions asked later in a conversation.
    new_questions: int
    new_right: int
    by_kind: dict[str, tuple[int, int]] = Field(default_factory=dict)
    methods: dict[str, int] = Field(default_factory=dict)
    fallback_reasons: dict[str, int] = Field(default_factory=dict)
    turns: list[TurnResult] = Field(default_factory=list)

    @property
    def followup_accuracy(self) -> float:
        return self.followups_right / self.followups if self.followups else 0.0


def _right(result: FollowUp, expected: Sequence[str]) -> bool:
    gold = {normalize_for_match(a) for a in expected}
    return bool(result.hits) and normalize_for_match(result.hits[0].answer) in gold


Resolver = Callable[..., FollowUp]


def resolve_by_confidence(engine: Any, message: str, history: Sequence[PastTurn] = (), *, llm: LLM | None = None,
                          top_k: int = 5, **_: Any) -> FollowUp:
    """The simplest memory, for comparison: search the message alone and with the previous request in
    front of it, and keep whichever retrieves with more confidence (no answer set aside, no LLM)."""
    started = time.monotonic()
    alone, _pred = engine.search(message, top_k=top_k)
    candidates: list[tuple[str, Method, list[AnswerHit]]] = [(message, "alone", list(alone))]
    if history:
        context = f"{history[-1].request} {message}"
        hits, _pred = engine.search(context, top_k=top_k)
        candidates.append((context, "context", list(hits)))
    tried = tuple(QueryTried(query=q, method=m, confidence=h[0].confidence if h else 0.0,
                             answer_id=h[0].answer_id if h else None) for q, m, h in candidates)
    query, method, best = max(candidates, key=lambda c: c[2][0].confidence if c[2] else 0.0)
    return FollowUp(message=message, query=query, kind="follow_up" if history else "new", method=method,
                    language="ru", tried=tried, hits=tuple(best), latency_s=round(time.monotonic() - started, 4))


def replay(engine: Any, conversation: EvalConversation, *, memory: bool = True, llm: LLM | None = None,
           llm_options: dict[str, Any] | None = None, resolver: Resolver = resolve_followup) -> list[TurnResult]:
    """Replay one conversation; one result per turn."""
    history: list[PastTurn] = []
    results: list[TurnResult] = []
    bar = answer_threshold(engine)
    for n, turn in enumerate(conversation.turns, start=1):
        past = history if memory else []
        result = resolver(engine, turn.say, past, llm=llm if memory else None, **(llm_options or {}))
        right = _right(result, turn.expected_answers)
        results.append(TurnResult(
            conversation=conversation.id, turn=n, kind=turn.kind, method=result.method, right=right,
            answered_right=right and result.confidence >= bar, query=result.query,
            answer_id=result.hits[0].answer_id if result.hits else "",
            fallback_reason=result.fallback_reason, latency_s=result.latency_s))
        if result.kind == "not_helped" and history:
            history[-1] = history[-1].model_copy(update={"rejected": True})
        history.append(PastTurn(message=turn.say, query=result.query,
                                answer_ids=tuple(h.answer_id for h in result.hits[:3]),
                                entry_ids=tuple(h.entry_id for h in result.hits[:3])))
    return results


def evaluate_conversations(engine: Any, conversations: Sequence[EvalConversation], *, memory: bool = True,
                           llm: LLM | None = None, llm_options: dict[str, Any] | None = None,
                           mode: str = "", resolver: Resolver = resolve_followup) -> ConversationReport:
    turns = [r for c in conversations
             for r in replay(engine, c, memory=memory, llm=llm, llm_options=llm_options, resolver=resolver)]
    follow = [t for t in turns if t.kind not in ("first", "new")]
    first = [t for t in turns if t.kind == "first"]
    new = [t for t in turns if t.kind == "new"]
    by_kind: dict[str, tuple[int, int]] = {}
    for kind in sorted({t.kind for t in turns}):
        of_kind = [t for t in turns if t.kind == kind]
        by_kind[kind] = (sum(t.right for t in of_kind), len(of_kind))
    report = ConversationReport(
        mode=mode or ("memory" + ("+llm" if llm else "") if memory else "no memory"),
        conversations=len(conversations), followups=len(follow), followups_right=sum(t.right for t in follow),
        followups_answered_right=sum(t.answered_right for t in follow), first_turns=len(first),
        first_right=sum(t.right for t in first), new_questions=len(new), new_right=sum(t.right for t in new),
        by_kind=by_kind, methods=dict(Counter(t.method for t in turns if t.turn > 1)),
        fallback_reasons=dict(Counter(_reason_kind(t.fallback_reason) for t in turns if t.fallback_reason)),
        turns=turns)
    log.info("followup_eval.done mode=%s followups=%s right=%s", report.mode, report.followups,
             report.followups_right)
    return report


def _reason_kind(reason: str) -> str:
    """The reason without its numbers, to count alike reasons together."""
    return reason.split(" (", 1)[0]
