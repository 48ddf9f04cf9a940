"""Normalized models shared by the engine, the importers and the composition root."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rag.text import normalize_for_match

Decision = Literal["answer", "abstain"]


def N_(key: str) -> str:
    """Marks an English text as a key of the application's ru/en catalogs (extracted by ``make
    messages``); returned as is: this package does not translate."""
    return key


#: Why the engine abstains: a stable code (kept with the suggestion, in the API) and its words, a
#: catalog key formatted with :attr:`EngineResult.reason_params`. The application shows them in the
#: reader's language; :attr:`EngineResult.reason` keeps the English for logs.
ABSTAIN_REASONS: dict[str, str] = {
    "category_off": N_("category '{category}' is switched off: agents answer it"),
    "nothing_found": N_("nothing relevant found in the knowledge base"),
    "below_threshold": N_("confidence {confidence} is below the threshold {threshold}"),
}


#: Why the extractive answer was shown instead of the LLM's: a stable code (kept with the suggestion as
#: ``extractive:<code>``) and its words for agents, a catalog key. The details (a timeout's seconds, the
#: kinds of an ungrounded item) stay in :attr:`ComposedAnswer.fallback_reason`, in English, for logs.
FALLBACK_REASONS: dict[str, str] = {
    "nothing_found": N_("nothing relevant found in the knowledge base"),
    "no_llm": N_("no LLM configured"),
    "llm_timeout": N_("the LLM did not answer in time"),
    "llm_unavailable": N_("the LLM could not be loaded"),
    "llm_error": N_("the LLM answered with an error"),
    "empty": N_("the LLM's answer was empty"),
    "repeats_prompt": N_("the LLM's answer repeated its instructions"),
    "no_answer": N_("the LLM found no answer in the entries"),
    "too_long": N_("the LLM's answer was too long"),
    "no_citation": N_("the LLM's answer cited no entry"),
    "bad_citation": N_("the LLM's answer cited an entry it was not given"),
    "ungrounded": N_("the LLM's answer had links, contacts, paths or secrets the cited entries do not contain"),
    "wrong_language": N_("the LLM answered in another language"),
}

#: How an answer was written, for agents.
ANSWER_MODES: dict[str, str] = {
    "llm": N_("written by the LLM from the entries"),
    "extractive": N_("the knowledge-base entries themselves"),
    "none": N_("no answer"),
}


def answer_mode_words(answer_mode: str, translate: Callable[[str], str] | None = None) -> str:
    """``llm`` / ``extractive:<code>`` (as kept with a suggestion) in words; a value kept before codes
    existed (``extractive: <English reason>``) keeps its reason as written."""
    _ = translate or N_
    mode, _sep, why = answer_mode.partition(":")
    words = _(ANSWER_MODES[mode]) if mode in ANSWER_MODES else mode
    why = why.strip()
    if not why:
        return words
    return f"{words} ({_(FALLBACK_REASONS[why]) if why in FALLBACK_REASONS else why})"


def reason_words(code: str, params: dict[str, str], translate: Callable[[str], str] | None = None) -> str:
    """The words of abstention reason ``code`` (English, or through ``translate``); "" for no code."""
    key = ABSTAIN_REASONS.get(code)
    if key is None:
        return ""
    return (translate or N_)(key).format(**params)


def stable_id(*parts: str) -> str:
    """A short, stable identifier derived from the given parts (sha1, 16 hex digits)."""
    h = hashlib.sha1("\x1f".join(parts).encode("utf-8"))  # noqa: S324 - identifier, not security
    return h.hexdigest()[:16]


def answer_key(answer: str) -> str:
    """The id shared by every answer equal to ``answer`` after case and whitespace normalization."""
    return stable_id("answer", normalize_for_match(answer))


class KBEntry(BaseModel):
    """One knowledge-base entry: a question (or ticket description) and its answer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    question: str
    answer: str
    title: str = ""
    categories: tuple[str, ...] = ()
    source: str = ""
    #: Where the entry came from, e.g. ``"kb.xlsx!Sheet1:12"``; shown in errors and to agents.
    origin: str = ""

    @property
    def answer_id(self) -> str:
        """Entries that share one answer (after case/whitespace normalization) share this id."""
        return answer_key(self.answer)

    @property
    def content_hash(self) -> str:
        return stable_id(self.question, self.answer, self.title, *self.categories)


class AnswerHit(BaseModel):
    """A distinct answer found for a query, with the entries that carry it."""

    answer_id: str
    answer: str
    entry_id: str
    question: str
    title: str = ""
    categories: tuple[str, ...] = ()
    #: Fused retrieval score (higher is better; scale depends on the fusion).
    score: float
    #: Calibrated probability that this answer is the right one (0..1).
    confidence: float = 0.0
    #: Per-signal details: bm25 / dense ranks and scores, learned boosts.
    signals: dict[str, float] = Field(default_factory=dict)


class CategoryPrediction(BaseModel):
    levels: tuple[str, ...] = ()
    confidence: float = 0.0
    #: Alternatives for the first level with their probabilities, best first.
    alternatives: list[tuple[str, float]] = Field(default_factory=list)


class ComposedAnswer(BaseModel):
    text: str
    #: "llm" when a checked LLM answer is used, "extractive" otherwise.
    mode: Literal["llm", "extractive", "none"]
    #: Why the extractive answer was used (no LLM, timeout, no citation, ...); empty when mode == "llm".
    fallback_reason: str = ""
    #: The same as a code of :data:`FALLBACK_REASONS`, for words in the reader's language.
    fallback_code: str = ""
    #: 1-based numbers of the entries the answer cites.
    citations: list[int] = Field(default_factory=list)
    language: str = "ru"
    latency_s: float = 0.0


class EngineResult(BaseModel):
    query: str
    language: str
    category: CategoryPrediction
    hits: list[AnswerHit]
    decision: Decision
    threshold: float
    #: Why the engine abstained (empty when it answers), in English (logs, the API).
    reason: str = ""
    #: The same as a code of :data:`ABSTAIN_REASONS` and its values, for words in another language.
    reason_code: str = ""
    reason_params: dict[str, str] = Field(default_factory=dict)
    composed: ComposedAnswer | None = None
