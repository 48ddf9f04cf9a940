"""rag.grounding: which links, contacts, paths and secrets an answer may carry (issue 8 item 2)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from rag.compose import compose_answer
from rag.grounding import describe, find_items, ungrounded
from tests.rag.llm.fakes import ScriptedLLM
from tests.rag.llm.hostile import HITS

SOURCE = (
    "Сбросьте пароль на https://password.example.ru/reset/ (из дома через vpn.example.ru). "
    "Папка: \\\\fs01.example.local\\Departments\\Финансы. Вопросы: security@example.ru, "
    "+7 (495) 123-45-67, доб. 1234. Временный пароль выдают в ИТ-кабинете: Start-2024."
)


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("https://evil.example.net/x", ["link"]),
        ("HTTPS:\\\\evil.example.net", ["link"]),
        ("www.evil.example.net/x", ["link"]),
        ("зайдите на login-portal.online", ["link"]),
        ("сервер 185.220.101.4:8443", ["link"]),
        ("[портал](https://evil.example.net)", ["link"]),
        ("[https://a.example.ru](https://b.example.net)", ["link", "link", "disguised link"]),
        ("[1](javascript:alert(1))", ["link"]),
        ("data:text/html;base64,PHNjcmlwdD4=", ["link"]),
        ("it@evil-mail.ru", ["e-mail address"]),
        ("it (at) evil-mail (dot) ru", ["e-mail address"]),
        ("mailto:it@evil-mail.ru", ["e-mail address"]),
        ("Telegram @it_help_bot", ["messenger handle"]),
        ("8 (800) 555-35-35", ["phone number"]),
        ("tel:+79991234567", ["phone number"]),
        ("\\\\share.example.net\\public\\fix.exe", ["file path"]),
        ("C:\\Users\\Public\\run.bat", ["file path"]),
        ("%APPDATA%\\Microsoft\\Outlook", ["file path"]),
        ("bash /tmp/x/install.sh", ["file path"]),
        ("~/.ssh/authorized_keys", ["file path"]),
        ("временный пароль: Welcome2024!", ["credential"]),
        ("your new password is Spring#24", ["credential"]),
        ("пароль для входа — qwerty", ["credential"]),
        ("PIN-код 4831", ["credential"]),
        ("token=ghp_a8F3kQ9zL2mN7xR4tW6v", ["credential"]),
        ("введите 7Hq2Lx9PzR4mK8sW3nB6", ["credential"]),
    ],
)
def test_what_counts_as_an_item(text: str, kinds: list[str]) -> None:
    assert [i.kind for i in find_items(text)] == kinds


@pytest.mark.parametrize(
    "text",
    [
        "Новый пароль — не короче 12 символов, с цифрами и заглавными буквами.",
        "If Outlook says your password is incorrect, type it again.",
        "Введите пароль и нажмите Enter. Пароль от 1С не нужен; PIN-код от карты не сообщайте.",
        "Вставьте токен Rutoken; ключ BitLocker хранится в ИТ.",
        "TCP/IP и/или DNS, Windows 10/11, версия 8.3.22.1709, ошибка 0x80070005, код -2147024891.",
        "12/05/2024 в 10:30, заявка ИНЦ-0012345, доб. 1234, KB5034441, ERROR_ACCESS_DENIED_BY_POLICY_1234.",
        "Нажмите Ctrl+Alt+Del, запустите setup.exe, диск C: заполнен, т.е. см. рис. 1.2.",
        "Логин фамилия.инициалы (ivanov.ii), почта @example.ru, MicrosoftOffice2016Professional.",
        "См. [1], [2, 3]; [email] и [phone] — маски.",
    ],
)
def test_ordinary_support_text_has_no_items(text: str) -> None:
    assert find_items(text) == []


@pytest.mark.parametrize(
    "answer",
    [
        "https://password.example.ru/reset",
        "HTTPS://Password.Example.RU/reset/.",
        "(https://password.example.ru)",  # a parent of the entry's link, on the same host
        "https://vpn.example.ru:443/",
        "\\\\fs01.example.local\\departments\\финансы",
        "//fs01.example.local/Departments",
        "SECURITY@example.ru",
        "8 495 123-45-67",
        "123-45-67",
        "Start-2024",
    ],
)
def test_an_item_of_the_source_passes_in_another_spelling(answer: str) -> None:
    assert ungrounded(answer, [SOURCE]) == []


@pytest.mark.parametrize(
    "answer",
    [
        "https://password.example.ru/reset/confirm",  # a child: not what the entry links to
        "https://password.example.ru/reset?next=https://evil.example.net",
        "https://password.example.ru.evil.example.net/reset",
        "https://password.example.ru@evil.example.net/reset",
        "https://pаssword.example.ru/reset",  # Cyrillic а
        "http://vpn.example.ru:8080",
        "\\\\fs01.example.local\\Departments\\Кадры",
        "security@example.ru.evil.example.net",
        "+7 (495) 123-45-76",
        "пароль: start-2024",  # a secret passes only exactly as the entry writes it
    ],
)
def test_a_near_miss_is_not_grounded(answer: str) -> None:
    assert ungrounded(answer, [SOURCE]) != []


def test_the_reason_names_kinds_never_values() -> None:
    items = ungrounded("Пишите на it@evil-mail.ru, звоните 8 800 555-35-35, пароль: Qwerty1 [1]", [SOURCE])

    reason = describe(items)

    assert (
        reason == "answer has an e-mail address, a phone number and a password or other secret not in the cited entries"
    )
    assert "evil" not in reason and "555" not in reason and "Qwerty1" not in reason


def test_only_the_cited_entries_ground_an_answer() -> None:
    # security@example.ru is in entry 3; citing only entry 1 does not make it ours to give.
    answer = "Перешлите письмо на security@example.ru [1]."

    assert compose_answer("Пришло странное письмо", HITS, language="ru", llm=ScriptedLLM([answer])).mode == "extractive"
    cited = answer.replace("[1]", "[3]")
    assert compose_answer("Пришло странное письмо", HITS, language="ru", llm=ScriptedLLM([cited])).mode == "llm"


def test_the_ungrounded_item_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    answer = "Сбросьте пароль на https://evil.example.net/reset, пароль: Qwerty123 [1]."

    result = compose_answer("Забыл пароль", HITS, language="ru", llm=ScriptedLLM([answer]))

    assert result.fallback_reason == "answer has a link and a password or other secret not in the cited entries"
    assert "compose.ungrounded" in caplog.text
    assert "evil" not in caplog.text and "Qwerty123" not in caplog.text


@pytest.mark.parametrize("kb", ["sample", "rutube"])
def test_every_knowledge_base_answer_grounds_itself(kb: str) -> None:
    """An answer that quotes its entry word for word always passes (no false alarm on real entries)."""
    from dataset import SAMPLE_KB
    from dataset.importers import read_kb

    path = (
        SAMPLE_KB
        if kb == "sample"
        else Path(__file__).resolve().parents[4] / "shared/datasets/rutube/knowledge_base.xlsx"
    )
    if not Path(path).exists():
        pytest.skip(f"{path} is not there (the shared datasets live beside the repository)")
    entries = read_kb(path).entries

    assert len(entries) > 100
    assert [e.id for e in entries if ungrounded(e.answer, [e.title, e.answer])] == []
    assert sum(len(find_items(e.answer)) for e in entries) > 100  # they do carry links, mails and paths


def test_output_mostly_markup_is_not_scanned_but_falls_back() -> None:
    from rag.compose import MAX_RAW_CHARS

    raw = f'<a href="https://evil.example.net/{"x" * MAX_RAW_CHARS}">Сбросьте пароль на портале [1].</a>'

    result = compose_answer("Забыл пароль", HITS, language="ru", llm=ScriptedLLM([raw]))

    assert result.mode == "extractive" and result.fallback_reason.startswith("answer too long")
