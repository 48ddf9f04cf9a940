"""The answer the requester sees: a checked LLM summary with citations, or the entries themselves.

:func:`compose_answer` asks the LLM for a short grounded answer and checks it before anyone sees it.
Any failed check (no LLM, error, timeout, empty, "no answer", no or bad citation, a link, contact,
path or secret that the cited entries do not contain (:mod:`rag.grounding`), wrong language, too long,
leaked prompt text) gives the extractive answer instead, with the reason recorded in
``fallback_reason``. The extractive answer is always available and never calls a model.

The checked text is what every reader gets: the requester's public reply or e-mail, the agent's
draft in the private note and the forward to the helpdesk all show ``ComposedAnswer.text``.
"""

from __future__ import annotations

import html
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Literal

from rag.errors import LLMError, LLMTimeout, ModelLoadError
from rag.grounding import describe, ungrounded
from rag.llm.base import LLM
from rag.models import AnswerHit, ComposedAnswer
from rag.prompts import NO_ANSWER, SYSTEM_PROMPTS, build_messages, system_prompt
from rag.text import clean_text, detect_language, normalize_for_match

logger = logging.getLogger(__name__)

Mode = Literal["llm", "extractive", "none"]

#: An answer longer than this (characters) is not the 2-5 sentences we asked for.
MAX_ANSWER_CHARS = 1200
#: Output longer than this before cleaning (markup included) is not checked item by item: it falls back.
MAX_RAW_CHARS = 20_000
#: A run of this many words copied from the system prompt counts as revealing it.
LEAK_WORDS = 6

#: A translator for the answer's language (English key -> text), given by the application's message
#: catalog; without one the English keys are shown.
Translate = Callable[[str], str]
LANGUAGES = ("ru", "en")


def _as_is(key: str) -> str:
    return key


def _nothing_found(words: Translate) -> str:
    _ = words
    return _(
        "Unfortunately, we found no answer to your question in the knowledge base. "
        "Your request has been passed to a support agent, who will get back to you."
    )

_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL | re.IGNORECASE)
_CITATION = re.compile(r"\[\s*(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\s*\]")
# The masks of rag.privacy, which the model may copy from the prompt.
_PLACEHOLDER = re.compile(r"\[(?:email|phone)\]")
# Text that only we put into the prompt; an answer that contains it echoes the prompt.
_PROMPT_MARKUP = re.compile(r"</?\s*(?:ticket|entry)\b|<\|im_(?:start|end)\|>", re.IGNORECASE)


def _lang(language: str) -> str:
    return language if language in LANGUAGES else "en"


def extractive_answer(
    hits: list[AnswerHit], language: str, max_entries: int = 3, *, words: Translate | None = None
) -> str:
    """The entries themselves, numbered, under a short intro in the requester's language (``words``
    translates the intro for ``language``).

    Shows each entry's title (when it has one) and its answer; never the entry's question, which may
    be another requester's ticket text.
    """
    _ = words or _as_is
    if not hits:
        return _nothing_found(_)
    parts = [_("This may help:")]
    for n, hit in enumerate(hits[:max_entries], start=1):
        answer = clean_text(hit.answer)
        title = clean_text(hit.title)
        parts.append(f"{n}. {title}\n{answer}" if title else f"{n}. {answer}")
    return "\n\n".join(parts)


def cited_numbers(text: str) -> list[int]:
    """Entry numbers cited as ``[1]``, ``[2, 3]`` or ``[1; 2]``, in order of first appearance."""
    seen: list[int] = []
    for group in _CITATION.findall(text):
        for part in re.split(r"[,;]", group):
            n = int(part)
            if n not in seen:
                seen.append(n)
    return seen


def _word_ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    tokens = re.findall(r"\w+", normalize_for_match(text))
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


_PROMPT_NGRAMS: set[tuple[str, ...]] = set()
for _prompt_lang in SYSTEM_PROMPTS:
    _PROMPT_NGRAMS |= _word_ngrams(system_prompt(_prompt_lang), LEAK_WORDS)


def reveals_prompt(text: str) -> bool:
    """True when the text contains our prompt markup or a run of words from a system prompt."""
    if _PROMPT_MARKUP.search(text):
        return True
    return not _word_ngrams(text, LEAK_WORDS).isdisjoint(_PROMPT_NGRAMS)


def _is_no_answer(text: str) -> bool:
    """The fixed phrase as the whole answer or its start (any case), or anywhere in capitals."""
    norm = normalize_for_match(text).strip(" .!«»\"'")
    return any(norm.startswith(normalize_for_match(phrase)) or phrase in text for phrase in NO_ANSWER.values())


def check_answer_coded(
    text: str, entries: Sequence[AnswerHit], language: str, raw: str = ""
) -> tuple[str, str, list[int]]:
    """Why the answer must not be shown (a code of ``FALLBACK_REASONS`` and the English details;
    ``""`` twice when it passes), and the entries it cites.

    ``raw`` is the model's output before cleaning: markup that cleaning removes (an ``<a href>``)
    still tells that the model wrote a link of its own.
    """
    n_entries = len(entries)
    if not text:
        return "empty", "empty answer", []
    if reveals_prompt(text):
        return "repeats_prompt", "answer repeats the prompt", []
    if _is_no_answer(text):
        return "no_answer", "the LLM found no answer in the entries", []
    if len(text) > MAX_ANSWER_CHARS:
        return "too_long", f"answer too long ({len(text)} characters, limit {MAX_ANSWER_CHARS})", []
    if len(raw) > MAX_RAW_CHARS:
        return "too_long", f"answer too long ({len(raw)} characters with markup, limit {MAX_RAW_CHARS})", []
    citations = cited_numbers(text)
    if not citations:
        return "no_citation", "no citation", []
    bad = [n for n in citations if not 1 <= n <= n_entries]
    if bad:
        return "bad_citation", f"cites entry [{bad[0]}], only {n_entries} given", citations
    # Links, contacts, paths and secrets only as the cited entries give them (what the requester
    # would see of those entries in the extractive answer: title and answer).
    sources = [part for n in citations for part in (entries[n - 1].title, entries[n - 1].answer)]
    forms = [text] + ([html.unescape(raw)] if raw and raw != text else [])
    foreign = ungrounded(forms, sources)
    if foreign:
        kinds = ",".join(sorted({i.kind for i in foreign}))
        logger.info("compose.ungrounded kinds=%s items=%d", kinds, len(foreign))
        return "ungrounded", describe(foreign), citations
    # Citations and bracketed placeholders carry no language; judge by the words.
    answer_language = detect_language(_PLACEHOLDER.sub(" ", _CITATION.sub(" ", text)), default=language)
    if answer_language != language:
        return "wrong_language", f"answer in the wrong language ({answer_language}, expected {language})", citations
    return "", "", citations


def check_answer(text: str, entries: Sequence[AnswerHit], language: str, raw: str = "") -> tuple[str, list[int]]:
    """Why the answer must not be shown (``""`` when it passes, else English details), and the
    entries it cites (see :func:`check_answer_coded`)."""
    _code, reason, citations = check_answer_coded(text, entries, language, raw)
    return reason, citations


def compose_answer(
    query: str,
    hits: list[AnswerHit],
    *,
    language: str,
    llm: LLM | None,
    max_entries: int = 3,
    max_new_tokens: int = 256,
    temperature: float = 0.2,
    timeout_s: float = 30.0,
    words: Translate | None = None,
) -> ComposedAnswer:
    """A checked LLM answer grounded in ``hits``, or the extractive answer with the reason why
    (``words``: the translator of ``language``, for the extractive answer's frame)."""
    started = time.monotonic()
    lang = _lang(language)
    shown = hits[:max_entries]

    def result(
        text: str, mode: Mode, reason: str = "", citations: list[int] | None = None, code: str = ""
    ) -> ComposedAnswer:
        answer = ComposedAnswer(
            text=text,
            mode=mode,
            fallback_reason=reason,
            fallback_code=code,
            citations=citations or [],
            language=lang,
            latency_s=time.monotonic() - started,
        )
        logger.info(
            "compose.done mode=%s reason=%s entries=%d latency_s=%.3f",
            answer.mode,
            answer.fallback_reason or "-",
            len(shown),
            answer.latency_s,
        )
        return answer

    def fallback(code: str, reason: str) -> ComposedAnswer:
        numbers = list(range(1, len(shown) + 1))
        return result(extractive_answer(shown, lang, max_entries, words=words), "extractive", reason, numbers, code)

    if not shown:
        return result(_nothing_found(words or _as_is), "none", "nothing found", code="nothing_found")
    if llm is None:
        return fallback("no_llm", "no LLM configured")

    messages = build_messages(query, shown, lang)
    logger.debug("compose.prompt llm=%s entries=%d chars=%d", llm.name, len(shown), len(messages[-1]["content"]))
    try:
        raw = llm.generate(messages, max_new_tokens=max_new_tokens, temperature=temperature, timeout_s=timeout_s)
    except LLMTimeout:
        logger.warning("compose.llm_timeout llm=%s timeout_s=%s", llm.name, timeout_s)
        return fallback("llm_timeout", f"LLM timeout after {timeout_s:g} s")
    except ModelLoadError as e:
        logger.warning("compose.llm_not_loaded llm=%s error=%s", llm.name, e)
        return fallback("llm_unavailable", f"LLM could not be loaded: {e}")
    except LLMError as e:
        logger.warning("compose.llm_error llm=%s error=%s", llm.name, e)
        return fallback("llm_error", f"LLM error: {e}")
    except Exception as e:
        # A bug in a backend must not cost the requester their answer: log it with its stack, fall back.
        logger.exception("compose.llm_failed llm=%s", llm.name)
        return fallback("llm_error", f"LLM failed: {type(e).__name__}")

    raw = _THINK.sub("", raw or "")
    text = clean_text(raw)
    code, reason, citations = check_answer_coded(text, shown, lang, raw=raw)
    if code:
        return fallback(code, reason)
    return result(text, "llm", "", citations)
