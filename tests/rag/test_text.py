"""Text cleaning, normalization, language detection and query cleaning."""

from __future__ import annotations

import pytest

from rag.text import clean_query, clean_text, detect_language, normalize_for_match, words


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (None, ""),
        ("", ""),
        (42, "42"),
        ("Не\u200bработает\u200c VPN\ufeff", "Неработает VPN"),
        ("пере\u00adзагрузка", "перезагрузка"),
        ("a\x00b\x07c\x1bd\x7f\x85e", "abcde"),
        ("строка 1\r\nстрока 2\rстрока 3", "строка 1\nстрока 2\nстрока 3"),
        ("Перезагрузите\u00a0\u00a0компьютер", "Перезагрузите компьютер"),
        ("a&nbsp;b &amp; c &lt;d&gt; &#1087;&#1088;", "a b & c <d> пр"),
        ("<p>Откройте <b>Пуск</b></p><div>Выберите&nbsp;«Параметры»</div>", "Откройте Пуск\nВыберите «Параметры»"),
        ("строка<br>вторая<BR/>третья", "строка\nвторая\nтретья"),
        ("<span style='color:red'>Важно</span>", "Важно"),
        ("  отступ \t слева  \n\n\n\n\nабзац  ", "отступ слева\n\nабзац"),
        ("a < b > c", "a < b > c"),
        ("Укажите <имя пользователя>", "Укажите <имя пользователя>"),
        ("AT&T", "AT&T"),
    ],
)
def test_clean_text(raw: object, clean: str) -> None:
    assert clean_text(raw) == clean


def test_clean_text_composes_decomposed_letters() -> None:
    assert clean_text("и\u0306") == "й"  # NFC: "й" typed as "и" + combining breve


def test_clean_text_keeps_keys_in_angle_brackets() -> None:
    assert (
        clean_text("Нажмите <Ctrl>+<Alt>+<Del> и выберите <Enter>") == "Нажмите <Ctrl>+<Alt>+<Del> и выберите <Enter>"
    )


def test_normalize_for_match_ignores_case_spacing_yo_and_markup() -> None:
    assert normalize_for_match("  Ёлка\u00a0 ПАРОЛЬ<br>новый\r\n") == "елка пароль новый"
    assert normalize_for_match("Сбросьте  пароль.") == normalize_for_match("сбросьте пароль.")
    assert normalize_for_match("сбросьте пароль.") != normalize_for_match("сбросьте пароль!")


def test_words() -> None:
    assert words("Ёжик, VPN-клиент 1С!") == ["ежик", "vpn", "клиент", "1с"]


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Не работает принтер", "ru"),
        ("VPN does not connect after the update", "en"),
        ("Не работает VPN в Outlook", "ru"),
        ("Ошибка 0x80070005 в Microsoft Teams", "ru"),
        ("Outlook не подключается к Exchange", "ru"),
        ("The printer in room 301 shows «Ошибка» and does not print anything", "en"),
        ("Ёлки", "ru"),
    ],
)
def test_detect_language(text: str, language: str) -> None:
    assert detect_language(text) == language
    assert detect_language(text, default="en" if language == "ru" else "ru") == language


@pytest.mark.parametrize("text", ["", "12345", "!!! ???", "+7 (495) 123-45-67"])
def test_detect_language_without_letters_gives_the_default(text: str) -> None:
    assert detect_language(text) == "ru"
    assert detect_language(text, default="en") == "en"


@pytest.mark.parametrize(
    ("raw", "query"),
    [
        ("Здравствуйте! Не работает VPN.", "Не работает VPN."),
        ("Добрый день!!! Не работает почта", "Не работает почта"),
        ("Доброго времени суток. Не могу войти", "Не могу войти"),
        ("Привет, принтер не печатает", "принтер не печатает"),
        ("Hello, VPN is down\nBest regards,\nJohn Smith", "VPN is down"),
        ("Принтер не печатает --Надежда", "Принтер не печатает"),
        ("Принтер не печатает -- Надежда Иванова", "Принтер не печатает"),
        ("Принтер не печатает\n--\nНадежда Иванова\nбухгалтерия, доб. 1234", "Принтер не печатает"),
        ("Здравствуйте!\nНе работает VPN.\nС уважением,\nИванова Надежда\nтел. 1234", "Не работает VPN."),
        ("Добрый день, портал https://portal.example.ru/login не открывается", "портал не открывается"),
        ("Не открывается www.example.ru/help в браузере", "Не открывается в браузере"),
        ("Не   работает\n\nпочта", "Не работает почта"),
    ],
)
def test_clean_query_keeps_the_meaning(raw: str, query: str) -> None:
    assert clean_query(raw) == query


@pytest.mark.parametrize(
    "raw", ["Здравствуйте!", "Добрый день", "https://portal.example.ru", "С уважением", "--Надежда", "\u200b!"]
)
def test_clean_query_never_returns_empty_for_a_non_empty_request(raw: str) -> None:
    assert clean_query(raw).strip()


def test_clean_query_of_whitespace_is_empty() -> None:
    assert clean_query(" \u200b\n ") == ""


def test_clean_query_keeps_text_after_a_double_hyphen_dash() -> None:
    assert clean_query("Не запускается 1С -- ошибка формата потока") == "Не запускается 1С -- ошибка формата потока"
