"""A clarifying question when the best answers are close and about different things.

"Не подключается" may be the VPN or the Wi-Fi: when the engine's best answers have close confidences
and sit in different categories, asking "Это про «Удаленный рабочий стол» или про «Wi-Fi»?" is better
than guessing. :func:`clarify` builds that question (the options are the first or second category
level at which the answers differ, else their entries' titles), :func:`match_choice` reads a typed
reply, and :func:`answer_choice` answers within the chosen option: retrieval is limited to its
first-level category (the engine's ``category`` filter) and the option's words are added to the
request, so two options of one first-level category ("VPN" or "Удаленный рабочий стол", both under
"VPN и удаленный доступ") are told apart. The chat asks at most ``max_rounds`` times, then answers
or offers a ticket.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from rag.models import AnswerHit, EngineResult
from rag.text import clean_text, normalize_for_match, words

#: Answers whose confidence is within this of the best one are "close".
MARGIN = 0.15
#: From this confidence the best answer needs no question.
SURE = 0.8
MAX_OPTIONS = 3
MAX_ROUNDS = 2

_QUESTION = {
    "ru": ("Уточните, пожалуйста: это про {options}?", "«{}»", " или про ", ", про "),
    "en": ("Could you tell me which one you mean: {options}?", "“{}”", " or ", ", "),
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClarifyOption(_Model):
    #: What the button says (a category name or an entry title).
    label: str
    #: ``category``: the label is a category name, added to the request; ``entry``: the label is an
    #: entry's title, which is itself the request the person chose.
    kind: Literal["category", "entry"] = "category"
    #: First-level category to answer within.
    category: str
    #: The answer that made this option (for analytics; the answer itself is searched again).
    answer_id: str
    entry_id: str


class Clarification(_Model):
    question: str
    options: tuple[ClarifyOption, ...]
    language: str
    #: Which question this is in the conversation (1 or 2).
    round: int


def _labels(hits: Sequence[AnswerHit]) -> tuple[list[str], Literal["category", "entry"]] | None:
    """The first or second category level when the answers differ there, else their titles (a
    third-level name such as "Неверный вывод" means little to a person; "Принтер печатает
    кракозябры" does)."""
    for depth in range(2):
        values = [h.categories[depth] if len(h.categories) > depth else "" for h in hits]
        if all(values) and len(set(values)) == len(values):
            return values, "category"
    titles = [clean_text(h.title) for h in hits]
    if all(titles) and len({normalize_for_match(t) for t in titles}) == len(titles):
        return titles, "entry"
    return None


def clarify(
    hits: Sequence[AnswerHit],
    *,
    language: str,
    rounds_done: int = 0,
    max_rounds: int = MAX_ROUNDS,
    margin: float = MARGIN,
    sure: float = SURE,
    max_options: int = MAX_OPTIONS,
) -> Clarification | None:
    """A question with options when the best answers are close and in different categories; None
    when the best answer is clear (or alone), when they are about the same thing, or after
    ``max_rounds`` questions."""
    if rounds_done >= max_rounds or len(hits) < 2 or not hits[0].categories:
        return None
    best = hits[0]
    if best.confidence >= sure:
        return None
    close = [h for h in hits if h.categories and best.confidence - h.confidence <= margin]
    # One option per first-level path prefix: the best answer of each distinct category path.
    chosen: list[AnswerHit] = []
    for h in close:
        if all(h.categories != c.categories for c in chosen):
            chosen.append(h)
    chosen = chosen[:max_options]
    if len(chosen) < 2:
        return None
    found = _labels(chosen)
    if found is None:
        return None
    labels, kind = found
    # Options whose label repeats another's (same category at the chosen level) are merged.
    options: list[ClarifyOption] = []
    for hit, label in zip(chosen, labels, strict=True):
        if all(o.label != label for o in options):
            options.append(ClarifyOption(label=label, kind=kind, category=hit.categories[0],
                                         answer_id=hit.answer_id, entry_id=hit.entry_id))
    if len(options) < 2:
        return None
    lang = language if language in _QUESTION else "en"
    template, quote, last_sep, sep = _QUESTION[lang]
    quoted = [quote.format(o.label) for o in options]
    listed = sep.join(quoted[:-1]) + last_sep + quoted[-1]
    return Clarification(question=template.format(options=listed), options=tuple(options), language=lang,
                         round=rounds_done + 1)


def match_choice(text: str, clarification: Clarification) -> ClarifyOption | None:
    """The option a typed reply picks: its number ("2") or the words of one label; None if unclear."""
    reply = clean_text(text).strip()
    m = re.fullmatch(r"\s*(\d)\s*[.)]?\s*", reply)
    if m:
        n = int(m.group(1))
        return clarification.options[n - 1] if 1 <= n <= len(clarification.options) else None
    whole = [o for o in clarification.options if normalize_for_match(o.label) in normalize_for_match(reply)]
    if len(whole) == 1:
        return whole[0]
    said = {w[:5] for w in words(reply) if len(w) >= 3}
    scored = [(len(said & {w[:5] for w in words(o.label) if len(w) >= 3}), o) for o in clarification.options]
    best = max(scored, key=lambda s: s[0])
    if best[0] == 0 or sum(1 for s, _ in scored if s == best[0]) > 1:
        return None
    return best[1]


def answer_choice(engine: Any, query: str, option: ClarifyOption) -> EngineResult:
    """Answer within the chosen option, retrieval limited to its first-level category
    (:meth:`Engine.ask` with ``category``): the request with the category's name added, or, for an
    entry option, the entry's title (the request the person picked)."""
    request = option.label if option.kind == "entry" else f"{query} {option.label}"
    result: EngineResult = engine.ask(request, category=option.category)
    return result
