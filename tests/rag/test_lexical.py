"""Lexical signals: tokenization, BM25 over stems, character n-grams, persistence."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.lexical import LexicalIndex, tokenize

DOCS = [
    "Принтер зажевал бумагу",
    "Забыл пароль от учётной записи",
    "Не подключается VPN, ошибка 809",
    "Outlook не отправляет письма",
    "Как подключить сетевой принтер",
    "Медленно открываются файлы на сетевом диске",
    "Printers are offline after the update",
]


@pytest.fixture(scope="module")
def index() -> LexicalIndex:
    return LexicalIndex.build(DOCS)


def test_tokenize_stems_and_drops_stop_words() -> None:
    assert tokenize("Здравствуйте! Принтеры не печатают, пожалуйста помогите") == ["принтер", "печат", "помог"]
    assert tokenize("Printers are offline, thanks") == ["printer", "offlin"]
    assert tokenize("принтер") == tokenize("принтера") == tokenize("принтеру") == tokenize("ПРИНТЕРОМ")
    assert tokenize("Ёлка") == tokenize("елка")
    assert tokenize("ошибка 0x80070005") == ["ошибк", "0x80070005"]
    assert tokenize("и в не на пожалуйста спасибо") == []
    # English questions lose their question words and auxiliaries as Russian ones do ("где", "как")...
    assert tokenize("Where is the nearest pharmacy? How can I get there?") == ["nearest", "pharmaci", "get"]
    assert tokenize("I can't log in") == ["log"]
    # ...but keep the particles of phrasal verbs that name IT problems.
    assert tokenize("logged out, then shut down") == ["log", "out", "shut", "down"]


def test_a_verbs_two_aspects_and_its_noun_share_a_stem() -> None:
    # Snowball alone: "подключа" / "подключ", "работа" / "работ".
    assert tokenize("подключается") == tokenize("подключиться") == tokenize("подключать") == ["подключ"]
    assert tokenize("работает") == tokenize("работа") == tokenize("работу")
    assert tokenize("удаляет") == tokenize("удалить")
    assert tokenize("заблокирована") == tokenize("заблокировать")
    assert tokenize("знает") == ["знает"] and tokenize("мама") == ["мам"]  # short stems keep their letters


def test_a_request_finds_the_entry_that_names_its_problem_in_the_other_aspect(index: LexicalIndex) -> None:
    # "Не подключается VPN" shares both words with the request only since the aspects share a stem.
    assert index.bm25_top("не могу подключиться к VPN", 3)[0][0] == 2


def test_bm25_finds_a_document_by_another_word_form(index: LexicalIndex) -> None:
    top = index.bm25_top("у принтера проблема", 10)
    assert {pos for pos, _ in top} == {0, 4}
    assert all(score > 0 for _, score in top)
    assert index.bm25_top("забыла пароли", 3)[0][0] == 1
    assert index.bm25_top("printer offline", 3)[0][0] == 6


def test_bm25_ranks_by_shared_words(index: LexicalIndex) -> None:
    top = index.bm25_top("сетевой принтер", 10)
    assert top[0][0] == 4  # both words
    assert {pos for pos, _ in top[1:]} == {0, 5}  # one word each
    scores = [s for _, s in top]
    assert scores == sorted(scores, reverse=True)
    assert len(index.bm25_top("сетевой принтер", 1)) == 1


def test_char_ngrams_tolerate_typos_bm25_does_not(index: LexicalIndex) -> None:
    assert index.bm25_top("пороль", 5) == []
    assert index.char_top("пороль", 5)[0][0] == 1
    assert index.char_top("outlok не отправлят", 5)[0][0] == 3
    assert index.char_top("прынтер зажувал бумагу", 5)[0][0] == 0


def test_char_ngrams_do_not_match_on_stop_words_alone() -> None:
    index = LexicalIndex.build(["Where can I see my payslip", "Принтер не печатает"])
    # Only "where" / "не" in common: no character n-gram left to match.
    assert index.char_top("Where is the nearest pharmacy?", 2) == []
    assert index.char_top("не могу", 2) == []
    assert index.char_top("payslp", 2)[0][0] == 0


@pytest.mark.parametrize("query", ["", "   ", "!!!", "пожалуйста спасибо", "впн"])
def test_queries_without_known_words_find_nothing_by_bm25(index: LexicalIndex, query: str) -> None:
    assert index.bm25_top(query, 5) == []


def test_empty_query_finds_nothing(index: LexicalIndex) -> None:
    assert index.char_top("", 5) == []


def test_save_and_load_give_the_same_results(index: LexicalIndex, tmp_path: Path) -> None:
    index.save(tmp_path / "lexical")
    loaded = LexicalIndex.load(tmp_path / "lexical")
    assert loaded.n_docs == len(DOCS)
    for query in ("принтера", "забыл пороль", "сетевой диск", "Outlook письма", "printer"):
        assert loaded.char_top(query, 5) == index.char_top(query, 5) != []
        assert loaded.bm25_top(query, 5) == index.bm25_top(query, 5)
    assert {pos for pos, _ in loaded.bm25_top("принтера", 5)} == {0, 4}
    assert not list((tmp_path / "lexical").rglob("*.pkl"))


def test_a_document_of_stop_words_only_is_indexed() -> None:
    index = LexicalIndex.build(["спасибо пожалуйста", "Принтер не печатает"])
    assert index.n_docs == 2
    assert [pos for pos, _ in index.bm25_top("принтер", 5)] == [1]
    assert index.bm25_top("спасибо", 5) == []
