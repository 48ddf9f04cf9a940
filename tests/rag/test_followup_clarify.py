"""The clarifying question (rag/clarify.py): when to ask, the options, a typed reply, answering within the choice."""

from __future__ import annotations

from typing import Any

import pytest

from rag.clarify import Clarification, ClarifyOption, answer_choice, clarify, match_choice
from rag.models import AnswerHit
from tests.rag import sample_engine as _sample

sample_engine = _sample.sample_engine  # the session fixture


def hit(answer_id: str, confidence: float, categories: tuple[str, ...], title: str = "") -> AnswerHit:
    return AnswerHit(answer_id=answer_id, answer=f"answer {answer_id}", entry_id=f"e-{answer_id}", question=title,
                     title=title or answer_id, categories=categories, score=1.0, confidence=confidence)


VPN = ("VPN и удаленный доступ", "Подключение к VPN", "Ошибка подключения")
RDP = ("VPN и удаленный доступ", "Удаленный рабочий стол", "Ошибка подключения")
WIFI = ("Сеть и Wi-Fi", "Wi-Fi", "Нет интернета")


def test_close_answers_in_different_first_level_categories_give_a_question() -> None:
    c = clarify([hit("a", 0.30, VPN), hit("b", 0.25, WIFI), hit("c", 0.01, RDP)], language="ru")
    assert c is not None
    assert [o.label for o in c.options] == ["VPN и удаленный доступ", "Сеть и Wi-Fi"]
    assert c.question == "Уточните, пожалуйста: это про «VPN и удаленный доступ» или про «Сеть и Wi-Fi»?"
    assert (c.round, c.language) == (1, "ru")
    assert [o.kind for o in c.options] == ["category", "category"]


def test_options_inside_one_first_level_category_are_told_apart_by_the_second_level() -> None:
    c = clarify([hit("a", 0.30, VPN), hit("b", 0.28, RDP)], language="ru")
    assert c is not None and [o.label for o in c.options] == ["Подключение к VPN", "Удаленный рабочий стол"]
    assert {o.category for o in c.options} == {"VPN и удаленный доступ"}


def test_third_level_differences_are_shown_by_entry_titles() -> None:
    a = hit("a", 0.3, ("Принтеры и сканеры", "Печать", "Неверный вывод"), "Принтер печатает кракозябры")
    b = hit("b", 0.25, ("Принтеры и сканеры", "Печать", "Безопасная печать"), "Печать по пропуску FollowMe")
    c = clarify([a, b], language="en")
    assert c is not None and [o.label for o in c.options] == ["Принтер печатает кракозябры", "Печать по пропуску FollowMe"]
    assert [o.kind for o in c.options] == ["entry", "entry"]
    assert c.question == "Could you tell me which one you mean: “Принтер печатает кракозябры” or “Печать по пропуску FollowMe”?"


@pytest.mark.parametrize(("hits", "why"), [
    ([hit("a", 0.9, VPN), hit("b", 0.85, WIFI)], "the best answer is sure"),
    ([hit("a", 0.6, VPN), hit("b", 0.3, WIFI)], "not close"),
    ([hit("a", 0.4, VPN), hit("b", 0.35, VPN)], "same category path"),
    ([hit("a", 0.4, VPN)], "one answer"),
    ([], "nothing"),
    ([hit("a", 0.4, ()), hit("b", 0.35, WIFI)], "uncategorised best answer"),
])
def test_no_question(hits: list[AnswerHit], why: str) -> None:
    assert clarify(hits, language="ru") is None, why


def test_at_most_two_rounds_and_at_most_three_options() -> None:
    hits = [hit("a", 0.3, VPN), hit("b", 0.29, WIFI), hit("c", 0.28, ("Почта", "Outlook")),
            hit("d", 0.27, ("Печать", "Очередь"))]
    second = clarify(hits, language="ru", rounds_done=1)
    assert second is not None and second.round == 2 and len(second.options) == 3
    assert second.question.count("«") == 3 and ", про «" in second.question
    assert clarify(hits, language="ru", rounds_done=2) is None


def _clarification() -> Clarification:
    options = tuple(ClarifyOption(label=label, category=label, answer_id=label, entry_id=label)
                    for label in ("Удаленный рабочий стол", "Wi-Fi", "Интернет"))
    return Clarification(question="?", options=options, language="ru", round=1)


@pytest.mark.parametrize(("reply", "label"), [("2", "Wi-Fi"), (" 3. ", "Интернет"), ("про удаленный стол", "Удаленный рабочий стол"),
                                              ("интернет конечно", "Интернет"), ("wi-fi", "Wi-Fi"),
                                              ("7", None), ("не знаю", None), ("", None)])
def test_a_typed_reply_picks_an_option(reply: str, label: str | None) -> None:
    picked = match_choice(reply, _clarification())
    assert (picked.label if picked else None) == label


@pytest.mark.slow
def test_an_ambiguous_request_gets_a_question_and_the_choice_is_answered(sample_engine: Any) -> None:
    query = "не подключается"
    hits, _ = sample_engine.search(query)
    c = clarify(hits, language="ru")
    assert c is not None and "Удаленный рабочий стол" in [o.label for o in c.options]
    rdp = next(o for o in c.options if o.label == "Удаленный рабочий стол")
    result = answer_choice(sample_engine, query, rdp)
    assert result.hits[0].title == "Удаленный рабочий стол не подключается"
    assert all(h.categories[0] == rdp.category for h in result.hits)


@pytest.mark.slow
def test_a_clear_request_gets_no_question(sample_engine: Any) -> None:
    hits, _ = sample_engine.search("Как подключить принтер, который стоит у меня в кабинете?")
    assert clarify(hits, language="ru") is None
