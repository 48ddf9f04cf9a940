"""read_tickets: the ticket export for the replay (every ticket kept, times parsed, bad rows named)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from dataset import SAMPLE_KB
from dataset.importers import KBImportError, parse_time, read_tickets
from tests.dataset.xlsx_util import TICKET_HEADER, write_csv, write_xlsx

ANSWER = "Перезагрузите роутер и проверьте кабель."


def export_rows() -> list[tuple[object, ...]]:
    return [
        ("Выгрузка обращений за 2024 год",),
        TICKET_HEADER,
        ("INC001", "Инцидент", datetime(2024, 1, 9, 9, 4), "1-я линия", "Нет сети", "Не работает интернет", ANSWER,
         "Сеть", "Интернет", ""),
        # The same templated ticket again: kept (read_kb would reject it as a duplicate).
        ("INC001", "Инцидент", datetime(2024, 1, 9, 9, 4), "1-я линия", "Нет сети", "Не работает интернет", ANSWER,
         "Сеть", "Интернет", ""),
        ("REQ002", "Запрос", "01.02.2024 10:15", "1-я линия", "Пароль", "", "Сброшен", "Учетные записи", "", ""),
        ("REQ003", "Запрос", "вчера", "1-я линия", "Пароль", "Забыл пароль", "Сброшен", "Учетные записи", "", ""),
        (None,) * 10,
        ("REQ004", "Запрос", None, "1-я линия", "", "", "Сброшен", "Учетные записи", "", ""),
        ("REQ005", "Запрос", 45000.5, "", "", "Нужен монитор", "", "Оборудование", "Мониторы", "Выдача"),
    ]


def test_reads_the_seeds_shape_and_keeps_every_ticket(tmp_path: Path) -> None:
    result = read_tickets(write_xlsx(tmp_path / "export.xlsx", export_rows()))
    assert result.has_time
    assert result.rows_read == len(result.tickets) + len(result.rejected) == 6
    assert result.blank_rows == 1
    codes = [t.code for t in result.tickets]
    assert codes == ["INC001", "INC001", "REQ002", "REQ005"]
    first = result.tickets[0]
    assert (first.row, first.kind, first.group, first.registered) == (3, "Инцидент", "1-я линия", datetime(2024, 1, 9, 9, 4))
    assert first.categories == ("Сеть", "Интернет")
    assert first.text == "Нет сети\nНе работает интернет"
    pwd = result.tickets[2]
    assert pwd.description == "Пароль"  # no description: the title is the request
    assert pwd.text == "Пароль"
    assert pwd.registered == datetime(2024, 2, 1, 10, 15)
    monitor = result.tickets[3]
    assert monitor.registered == datetime(2023, 3, 15, 12, 0)  # Excel serial 45000.5
    assert monitor.resolution == ""  # still a request, just not resolved
    assert monitor.categories == ("Оборудование", "Мониторы", "Выдача")
    problems = {(e.row, e.column): e.reason for e in result.rejected}
    assert problems[(6, "Время регистрации")].startswith("unreadable registration time: 'вчера'")
    assert problems[(8, "Описание")] == "empty request ('Описание' and 'Краткое описание' empty)"
    assert "export.xlsx" in str(result.rejected[0]) and "row 6" in str(result.rejected[0])


def test_reads_the_sample_knowledge_base_as_tickets() -> None:
    result = read_tickets(SAMPLE_KB)
    assert len(result.tickets) == 188 and not result.rejected
    assert all(t.registered is not None and t.resolution for t in result.tickets)


def test_csv_with_a_column_map(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "tickets.csv",
        [
            ("id", "created", "subject", "body", "answer", "topic"),
            ("7", "2024-03-01T08:00:00+03:00", "VPN", "Не подключается VPN", "Переустановите клиент", "VPN"),
            ("8", "2024-03-02 09:30", "", "Принтер не печатает", "", "Печать"),
        ],
        delimiter=";",
    )
    mapping = {"code": "id", "registered": "created", "title": "subject", "description": "body",
               "resolution": "answer", "category1": "topic"}
    result = read_tickets(path, mapping=mapping)
    assert [t.code for t in result.tickets] == ["7", "8"]
    assert result.tickets[0].registered == datetime(2024, 3, 1, 5, 0)  # +03:00 -> UTC, compared naive
    assert result.tickets[0].categories == ("VPN",)
    assert result.tickets[1].text == "Принтер не печатает"


def test_a_csv_without_times_is_read_and_says_so(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", [("Описание", "Решение"), ("Не работает почта", "Перезапустите Outlook")])
    result = read_tickets(path)
    assert not result.has_time and result.tickets[0].registered is None
    assert any("Время регистрации" in w for w in result.warnings)


def test_bad_files_and_mappings_are_named(tmp_path: Path) -> None:
    other = write_csv(tmp_path / "other.csv", [("a", "b"), ("1", "2")])
    with pytest.raises(KBImportError, match=r"other\.csv: no ticket columns found.*Headers found: 'a', 'b'"):
        read_tickets(other)
    with pytest.raises(KBImportError, match="unknown ticket field 'question'"):
        read_tickets(other, mapping={"question": "a"})
    with pytest.raises(KBImportError, match="no ticket columns"):
        read_tickets(other, mapping={"description": "a", "registered": "missing"})
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(KBImportError, match="empty"):
        read_tickets(empty)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("  ", None),
        (datetime(2024, 5, 1, 12, 0, tzinfo=UTC), datetime(2024, 5, 1, 12, 0)),
        ("31.12.2023", datetime(2023, 12, 31)),
        ("31.12.23 23:59", datetime(2023, 12, 31, 23, 59)),
        ("2023-12-31 23:59:58", datetime(2023, 12, 31, 23, 59, 58)),
        ("31/12/2023 08:00", datetime(2023, 12, 31, 8, 0)),
        (45292, datetime(2024, 1, 1)),
    ],
)
def test_parse_time(value: object, expected: datetime | None) -> None:
    assert parse_time(value) == expected


@pytest.mark.parametrize("value", ["вчера", "31.13.2023", 12, 1e9, "2023-02-30"])
def test_parse_time_refuses_what_is_not_a_time(value: object) -> None:
    with pytest.raises(ValueError):
        parse_time(value)
