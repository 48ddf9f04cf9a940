"""Reply keywords: the fallback way a user confirms by e-mail ("Да, помогло" / "No, still broken").

Signed links are the main way (RFC 8058's reasoning: scanners open links); this is deliberately conservative: it reads
only the first line of the new text (a greeting-only line is skipped), the first sentence there
that says something, and answers None whenever it is not clear. Thanks alone is not a confirmation.

Rules, in order, for that sentence:
- a question ("Помогло?") -> None;
- "да"/"yes" and "нет"/"no" count only as the first word (after fillers such as "ну", "ok");
- a positive word after a negation ("не помогло", "not fixed", "didn't work") is a refusal;
- words that only mean something when negated ("help", "work") are refusals after a negation and
  ignored otherwise;
- "больше не"/"no longer"/"no more" -> None (the error no longer appears? the printer no longer works?);
- both a confirmation and a refusal -> None; a confirmation with "но"/"but" -> None;
- otherwise the one polarity found.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

Verdict = Literal["solved", "not_solved"]

_WORD = re.compile(r"[a-zа-я0-9]+(?:['\-][a-zа-я0-9]+)*|,")
_SENTENCE = re.compile(r"[^.!?;…]+[.!?;…]*")

_CONTRACTIONS = {
    "didnt": "didn't",
    "doesnt": "doesn't",
    "dont": "don't",
    "isnt": "isn't",
    "wasnt": "wasn't",
    "hasnt": "hasn't",
    "havent": "haven't",
    "cant": "can't",
    "wont": "won't",
    "aint": "ain't",
}


def _phrases(spec: str) -> list[tuple[str, ...]]:
    """``"a b|c"`` -> ``[("a", "b"), ("c",)]``."""
    return [tuple(p.split()) for p in spec.split("|") if p.strip()]


#: Words skipped at the start of a sentence before "да/yes/нет/no" is looked for.
_LEAD_FILLERS = set(
    "ну ок ok okay окей хорошо well so итак привет здравствуйте hi hello hey спасибо thanks thank you "
    "большое огромное many much к сожалению увы unfortunately sorry извините oh ой эх".split()
)
_YES_FIRST = {"да", "ага", "угу", "yes", "yep", "yeah", "yup"}
_NO_FIRST = {"нет", "неа", "no", "nope", "nah"}
#: Confirmations. Negated, each is a refusal.
_POSITIVE = _phrases(
    "помогло|помог|помогла|помогли|помогает|решено|решена|решен|решился|решилась|решилось|"
    "заработало|заработал|заработала|работает|работают|исправлено|исправлена|исправился|исправилось|"
    "получилось|подошло|подошел|подошла|сработало|можно закрывать|можно закрыть|закрывайте|"
    "solved|resolved|fixed|worked|works|working|helped|sorted|all good|you can close|please close"
)
#: Words that confirm nothing alone ("please help") but refuse after a negation ("didn't help").
_NEGATED_ONLY = _phrases("help|work|fix|solve|resolve|помочь|работать|решить")
#: "still" too: "still not", "still isn't" are covered by not/isn't.
_NEGATORS = set("не ни never not didn't doesn't don't isn't wasn't hasn't haven't can't won't ain't still".split())
#: Refusals on their own (anywhere in the sentence).
_NEGATIVE = _phrases(
    "да нет|осталась|остался|осталось|остается|сохраняется|повторяется|по-прежнему|до сих пор|все еще|"
    "все равно|опять|снова|без изменений|ничего не изменилось|still|broken|persists|unsolved|unresolved|"
    "no luck|no change|nothing changed|same problem|same error|same issue"
)
_AMBIGUOUS = _phrases(
    "больше не|больше нет|no longer|no more|no problem|не знаю|не уверен|не уверена|пока не|ли|попробую|"
    "проверю|not sure|don't know|not yet|will try|try|i'll"
)
_CONTRAST = {"но", "однако", "хотя", "but", "however", "although", "though", "except", "кроме"}
_GREETING = re.compile(
    r"^\s*(здравствуйте|добрый\s+(день|вечер)|доброе\s+утро|привет|hi|hello|hey|dear|good\s+(morning|afternoon|evening))\b",
    re.IGNORECASE,
)


def _tokens(sentence: str) -> list[str]:
    norm = sentence.lower().replace("ё", "е").replace("’", "'").replace("`", "'")
    return [_CONTRACTIONS.get(t, t) for t in _WORD.findall(norm)]


def _starts(tokens: list[str], i: int, phrase: tuple[str, ...]) -> bool:
    return tuple(tokens[i : i + len(phrase)]) == phrase


def _match_any(tokens: list[str], i: int, phrases: Sequence[tuple[str, ...]]) -> int:
    """Length of the longest phrase starting at ``i`` (0 when none)."""
    return max((len(p) for p in phrases if _starts(tokens, i, p)), default=0)


def _negated_positive(tokens: list[str], i: int) -> int:
    """After the negation at ``i``: the index just past a positive word it reaches (one of the next
    three words, not across a comma: "не помогло", "ничего не помогло", "not really fixed"), else 0."""
    for j in range(i + 1, min(i + 4, len(tokens))):
        if tokens[j] == ",":
            return 0
        n = _match_any(tokens, j, _POSITIVE) or _match_any(tokens, j, _NEGATED_ONLY)
        if n:
            return j + n
    return 0


def _judge(tokens: list[str]) -> Verdict | Literal["unclear", "nothing"]:
    pos = neg = False
    i = 0
    while i < len(tokens) and (tokens[i] in _LEAD_FILLERS or tokens[i] == ","):
        i += 1
    if i < len(tokens):
        if _starts(tokens, i, ("да", "нет")):
            neg = True
            i += 2
        elif tokens[i] in _YES_FIRST:
            pos = True
            i += 1
        elif tokens[i] in _NO_FIRST and _match_any(tokens, i, _AMBIGUOUS) == 0:
            neg = True
            i += 1
    while i < len(tokens):
        if _match_any(tokens, i, _AMBIGUOUS):
            return "unclear"
        if tokens[i] in _NEGATORS:
            reach = _negated_positive(tokens, i)
            if reach or tokens[i] == "still":
                neg = True
            i = reach or i + 1
            continue
        n = _match_any(tokens, i, _NEGATIVE)
        if n:
            neg = True
            i += n
            continue
        n = _match_any(tokens, i, _POSITIVE)
        if n:
            pos = True
            i += n
            continue
        i += 1
    if pos and neg:
        return "unclear"
    if pos and any(t in _CONTRAST for t in tokens):
        return "unclear"
    if pos:
        return "solved"
    if neg:
        return "not_solved"
    return "nothing"


def _first_lines(text: str) -> list[str]:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip() and not line.lstrip().startswith(">")]
    if not lines:
        return []
    if _GREETING.match(lines[0]) and len(_tokens(lines[0])) <= 4 and len(lines) > 1:
        return [lines[0], lines[1]]
    return [lines[0]]


def classify_reply(text: str) -> Verdict | None:
    """Return "solved", "not_solved" or None (unclear) for the new text of a reply (quotes stripped)."""
    for line in _first_lines(text):
        for count, sentence in enumerate(_SENTENCE.findall(line)):
            if count >= 3:
                return None
            tokens = _tokens(sentence)
            if not [t for t in tokens if t != ","]:
                continue
            verdict = _judge(tokens)
            if verdict == "nothing":
                continue
            if verdict == "unclear" or sentence.rstrip().endswith("?"):
                return None
            return verdict
    return None
