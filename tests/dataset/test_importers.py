"""Tests of the knowledge-base and eval-case importers (files are built in tmp_path)."""

from __future__ import annotations

import re
import zipfile
from datetime import datetime
from pathlib import Path

import pytest

from dataset.importers import (
    MAX_TEXT_CHARS,
    PRESETS,
    EvalCase,
    ImportResult,
    KBImportError,
    RowError,
    _xlsx_merged_ranges,
    read_cases,
    read_kb,
)
from rag.models import stable_id
from rag.text import normalize_for_match
from tests.dataset.xlsx_util import FAQ_HEADER, TICKET_HEADER, write_csv, write_xlsx

RUTUBE = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "rutube"
needs_rutube = pytest.mark.skipif(
    not (RUTUBE / "knowledge_base.xlsx").is_file(),
    reason=f"the RUTUBE dataset is not available at {RUTUBE}",
)


def check_accounting(result: ImportResult) -> None:
    """Every non-blank data row is an entry or a rejection, never dropped."""
    assert result.rows_read == len(result.entries) + len(result.rejected)


def ticket_rows() -> list[tuple[object, ...]]:
    return [
        ("Выгрузка обращений за период XX.XX.XXXX - XX.XX.XXXX", *[None] * 9),
        TICKET_HEADER,
        (
            "SD0001",
            "Инцидент",
            datetime(2023, 5, 4, 10, 15),
            "1С",
            "Нет доступа к 1С",
            "Не могу войти в 1С: пишет «неверный пароль»",
            "Сбросили пароль, пользователь XXX вошёл",
            "Программы",
            "1С",
            "Доступ",
        ),
        (
            "SD0002",
            "Запрос на обслуживание",
            None,
            "ИТ",
            "Принтер не печатает",
            None,  # the question falls back to Краткое описание
            "Перезапустили службу печати",
            "Оборудование",
            "Принтеры",
            None,  # empty trailing level is dropped
        ),
    ]


# -- presets --------------------------------------------------------------------------------------


def test_ticket_export_preset_is_detected_below_a_title_row(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "tickets.xlsx", ticket_rows())
    result = read_kb(path)
    check_accounting(result)
    assert result.preset == "ticket_export"
    assert result.source == "tickets.xlsx"
    assert result.rows_read == 2
    assert result.rejected == []
    first, second = result.entries
    assert first.question == "Не могу войти в 1С: пишет «неверный пароль»"
    assert first.title == "Нет доступа к 1С"
    assert first.answer == "Сбросили пароль, пользователь XXX вошёл"  # masked digits kept as is
    assert first.categories == ("Программы", "1С", "Доступ")
    assert first.id == stable_id("tickets.xlsx", "code", "SD0001")
    assert first.source == "tickets.xlsx"
    assert first.origin == "tickets.xlsx!Лист1:3"
    assert second.question == "Принтер не печатает"
    assert second.categories == ("Оборудование", "Принтеры")
    assert second.id == stable_id("tickets.xlsx", "code", "SD0002")


def test_masked_or_repeated_ticket_codes_fall_back_to_question_ids(tmp_path: Path) -> None:
    rows = ticket_rows()
    rows[2] = ("SDXXXX", *rows[2][1:])
    rows[3] = ("SDXXXX", *rows[3][1:])
    rows.append(("SD0003", None, None, None, "Нет сети", "Не работает интернет", "Перезагрузили роутер"))
    rows.append(("SD0003", None, None, None, "Нет сети", "Не открываются сайты", "Сбросили кэш DNS"))
    result = read_kb(write_xlsx(tmp_path / "tickets.xlsx", rows))
    check_accounting(result)
    assert len(result.entries) == 4
    question = normalize_for_match("Не могу войти в 1С: пишет «неверный пароль»")
    assert result.entries[0].id == stable_id("tickets.xlsx", "q", question)
    assert len({e.id for e in result.entries}) == 4
    assert "tickets.xlsx: 4 rows have a 'Код' that is masked or repeats in the file" in result.warnings[0]


def test_faq_preset_fields_and_categories(tmp_path: Path) -> None:
    rows = [
        FAQ_HEADER,
        (
            "Пароль",
            "Как сменить пароль?",
            "Нажмите Ctrl+Alt+Del и выберите «Сменить пароль».",
            "УЧЁТНЫЕ ЗАПИСИ",
            "Пароли",
        ),
        ("VPN", "Не подключается VPN", "Проверьте, что включена двухфакторная аутентификация.", "СЕТЬ", None),
    ]
    result = read_kb(write_xlsx(tmp_path / "faq.xlsx", rows, sheet="FAQ"), source="it-faq")
    check_accounting(result)
    assert result.preset == "faq"
    assert result.sheets == ["FAQ"]
    first, second = result.entries
    assert (first.title, first.question) == ("Пароль", "Как сменить пароль?")
    assert first.answer == "Нажмите Ctrl+Alt+Del и выберите «Сменить пароль»."
    assert first.categories == ("УЧЁТНЫЕ ЗАПИСИ", "Пароли")
    assert second.categories == ("СЕТЬ",)
    assert first.source == "it-faq"
    assert first.id == stable_id("it-faq", "q", normalize_for_match("Как сменить пароль?"))


def test_ids_are_stable_and_an_edited_answer_keeps_its_id(tmp_path: Path) -> None:
    rows: list[tuple[object, ...]] = [
        FAQ_HEADER,
        ("Пароль", "Как сменить пароль?", "Ctrl+Alt+Del, «Сменить пароль».", "УЧЁТНЫЕ ЗАПИСИ", "Пароли"),
        ("Почта", "Не приходит почта", "Проверьте папку «Спам».", "ПОЧТА", "Outlook"),
    ]
    path = write_xlsx(tmp_path / "faq.xlsx", rows)
    first = read_kb(path)
    again = read_kb(path)
    assert [e.id for e in first.entries] == [e.id for e in again.entries]
    assert [e.content_hash for e in first.entries] == [e.content_hash for e in again.entries]

    rows[1] = (
        "Пароль",
        "Как сменить пароль?",
        "Откройте портал self-service и смените пароль.",
        "УЧЁТНЫЕ ЗАПИСИ",
        "Пароли",
    )
    edited = read_kb(write_xlsx(path, rows))
    assert [e.id for e in edited.entries] == [e.id for e in first.entries]
    assert edited.entries[0].content_hash != first.entries[0].content_hash
    assert edited.entries[1].content_hash == first.entries[1].content_hash


def test_repeated_questions_get_distinct_ids_and_exact_copies_are_rejected(tmp_path: Path) -> None:
    question = "Что такое приложение Студия?"
    rows = [
        FAQ_HEADER,
        ("Студия на iOS", question, "Приложение для iOS.", "АККАУНТ", "Приложение"),
        ("Студия на Android", question, "Приложение для Android.", "АККАУНТ", "Приложение"),
        ("Студия на Android", question, "Ещё один ответ для Android.", "АККАУНТ", "Приложение"),
        ("Студия на iOS", question, "Приложение для iOS.", "АККАУНТ", "Приложение"),  # a copy of row 2
    ]
    path = write_xlsx(tmp_path / "faq.xlsx", rows)
    result = read_kb(path)
    check_accounting(result)
    assert len(result.entries) == 3
    assert len({e.id for e in result.entries}) == 3
    [dup] = result.rejected
    assert (dup.row, dup.column) == (5, "Вопрос из БЗ")
    assert "duplicate of row 2" in dup.reason
    assert [e.id for e in read_kb(path).entries] == [e.id for e in result.entries]


def test_an_explicit_mapping_overrides_detection(tmp_path: Path) -> None:
    rows = [(*FAQ_HEADER, "Ответ сотрудника"), ("Тема", "Вопрос?", "Ответ из БЗ", "К1", "К2", "Живой ответ")]
    path = write_xlsx(tmp_path / "faq.xlsx", rows)
    result = read_kb(path, mapping={"question": "Вопрос из БЗ", "answer": "ответ СОТРУДНИКА"})
    assert result.preset == "generic"
    [entry] = result.entries
    assert entry.answer == "Живой ответ"
    assert entry.categories == ()
    # With a preset, a mapping only replaces the columns it names.
    [entry] = read_kb(path, preset="faq", mapping={"answer": "Ответ сотрудника"}).entries
    assert (entry.answer, entry.title, entry.categories) == ("Живой ответ", "Тема", ("К1", "К2"))


def test_generic_mapping_with_ids_and_categories(tmp_path: Path) -> None:
    rows = [
        ("ID", "Q", "A", "Group", "Sub"),
        ("k1", "How do I reset my password?", "Use the self-service portal.", "Accounts", "Passwords"),
        ("k2", "VPN does not connect", "Check the token.", "Network", None),
        ("k1", "Printer jams", "Open tray 2.", "Hardware", None),
    ]
    path = write_csv(tmp_path / "kb.csv", rows)
    mapping = {"question": "Q", "answer": "A", "id": "ID", "categories": "Group, Sub"}
    result = read_kb(path, mapping=mapping)
    check_accounting(result)
    assert result.preset == "generic"
    assert [e.id for e in result.entries] == [
        stable_id("kb.csv", "id", "k1"),
        stable_id("kb.csv", "id", "k2"),
    ]
    assert result.entries[0].categories == ("Accounts", "Passwords")
    assert result.entries[0].origin == "kb.csv:2"
    [dup] = result.rejected
    assert str(dup) == "kb.csv, row 4, column 'ID': duplicate id 'k1': already used in row 2"
    levels = read_kb(path, mapping={"question": "Q", "answer": "A", "category1": "Group", "category2": "Sub"})
    assert levels.entries[1].categories == ("Network",)


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"question": "Q", "answer": "A", "body": "X"}, "unknown mapping field 'body'"),
        ({"question": "Q"}, "the mapping needs answer"),
        (
            {"question": "Вопрос", "answer": "A"},
            "column 'Вопрос' (mapped to question) of the mapping not found",
        ),
        (
            {"question": "Q", "answer": "A", "title": "Тема"},
            "column 'Тема' (mapped to title) of the mapping not found",
        ),
    ],
)
def test_bad_mappings_are_explained(tmp_path: Path, mapping: dict[str, str], message: str) -> None:
    path = write_csv(tmp_path / "kb.csv", [("Q", "A", "Note"), ("q", "a", "n")])
    with pytest.raises(KBImportError, match=re.escape(message)) as info:
        read_kb(path, mapping=mapping)
    assert "kb.csv" in str(info.value)
    if "not found" in message:
        assert "Headers found: 'Q', 'A', 'Note'" in str(info.value)


def test_preset_names_are_checked(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "kb.csv", [("Q", "A"), ("q", "a")])
    with pytest.raises(KBImportError, match="unknown preset 'tickets'; known presets: ticket_export, faq, generic"):
        read_kb(path, preset="tickets")
    with pytest.raises(KBImportError, match="preset 'generic' needs a column mapping"):
        read_kb(path, preset="generic")
    with pytest.raises(KBImportError, match=r"columns 'Вопрос из БЗ', 'Ответ из БЗ' of preset 'faq' not found"):
        read_kb(path, preset="faq")
    assert set(PRESETS) >= {"ticket_export", "faq", "generic"}


# -- bad files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["empty.xlsx", "empty.csv"])
def test_zero_byte_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(KBImportError, match=rf"{re.escape(name)}: the file is empty \(0 bytes\)"):
        read_kb(path)
    with pytest.raises(KBImportError, match="empty"):
        read_cases(path)


def test_workbook_without_rows(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "blank.xlsx", [])
    with pytest.raises(KBImportError, match=r"blank\.xlsx: the workbook has no rows"):
        read_kb(path)
    with pytest.raises(KBImportError, match=r"blank\.xlsx: the workbook has no rows"):
        read_cases(path)


def test_wrong_headers_list_what_was_found(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "kb.xlsx", [("Номер", "Текст", "Комментарий"), (1, "x", "y")])
    with pytest.raises(KBImportError) as info:
        read_kb(path)
    message = str(info.value)
    assert message.startswith("kb.xlsx: no known column layout")
    assert "sheet 'Лист1': 'Номер', 'Текст', 'Комментарий'" in message
    assert "ticket_export" in message and "faq" in message
    assert "--map question=COLUMN --map answer=COLUMN" in message


def test_unsupported_and_unreadable_files(tmp_path: Path) -> None:
    xls = tmp_path / "old.xls"
    xls.write_bytes(b"\xd0\xcf\x11\xe0 not really")
    with pytest.raises(KBImportError, match=r"old.xls: unsupported file type '.xls'; supported: .xlsx, .xlsm, .csv"):
        read_kb(xls)
    fake = tmp_path / "fake.xlsx"
    fake.write_text("Вопрос,Ответ\nq,a\n", encoding="utf-8")
    with pytest.raises(KBImportError, match=r"fake.xlsx: cannot be read as an Excel workbook.*name it .csv"):
        read_kb(fake)
    with pytest.raises(KBImportError, match=r"missing\.csv: file not found"):
        read_kb(tmp_path / "missing.csv")


# -- rows -----------------------------------------------------------------------------------------


def test_bad_rows_are_reported_and_the_rest_imported(tmp_path: Path) -> None:
    rows = [
        FAQ_HEADER,
        ("Т1", "Вопрос 1?", "Ответ 1", "A", "B"),
        ("Т2", "Вопрос 2?", None, "A", "B"),
        (None, None, None, None, None),
        ("Т3", "   \u200b ", "Ответ 3", "A", None),
        ("Т4", "Вопрос 4?", "x" * (MAX_TEXT_CHARS + 1), "A", None),
        (None, None, None, "только категория", None),
        ("Т6", "Вопрос 6?", "Ответ 6", None, None),
    ]
    result = read_kb(write_xlsx(tmp_path / "kb.xlsx", rows))
    check_accounting(result)
    assert [e.question for e in result.entries] == ["Вопрос 1?", "Вопрос 6?"]
    assert result.blank_rows == 1
    assert result.rows_read == 6
    assert [(e.row, e.column) for e in result.rejected] == [
        (3, "Ответ из БЗ"),
        (5, "Вопрос из БЗ"),
        (6, "Ответ из БЗ"),
        (7, "Вопрос из БЗ"),
    ]
    assert str(result.rejected[0]) == "kb.xlsx, sheet 'Лист1', row 3, column 'Ответ из БЗ': empty answer"
    assert result.rejected[1].reason == "empty question"
    assert result.rejected[2].reason.startswith("text too long (20,001 characters")
    assert result.summary() == "kb.xlsx: 6 rows read (faq): 2 entries, 4 rejected, 1 blank rows skipped"


def test_row_error_text() -> None:
    error = RowError("Лист1", 12, "Решение", "empty answer", "kb.xlsx")
    assert str(error) == "kb.xlsx, sheet 'Лист1', row 12, column 'Решение': empty answer"
    assert str(RowError("", 3, "", "empty query")) == "row 3: empty query"


def test_numbers_and_dates_where_text_is_expected(tmp_path: Path) -> None:
    rows = [
        FAQ_HEADER,
        (2024, 404, 3.0, 1, 2.5),
        ("Дата", datetime(2024, 3, 1), datetime(2024, 3, 1, 9, 30), True, None),
        ("HTML", "<p>Как&nbsp;войти?</p>", "Шаг 1<br>Шаг 2", "  ДОСТУП  ", None),
    ]
    result = read_kb(write_xlsx(tmp_path / "kb.xlsx", rows))
    check_accounting(result)
    numbers, dates, html = result.entries
    assert (numbers.title, numbers.question, numbers.answer, numbers.categories) == (
        "2024",
        "404",
        "3",
        ("1", "2.5"),
    )
    assert (dates.question, dates.answer, dates.categories) == ("2024-03-01", "2024-03-01 09:30", ("True",))
    assert (html.question, html.answer, html.categories) == ("Как войти?", "Шаг 1\nШаг 2", ("ДОСТУП",))


def test_merged_category_cells_are_inherited(tmp_path: Path) -> None:
    rows: list[list[object]] = [["Выгрузка"], list(TICKET_HEADER)]
    for i in range(1, 6):
        rows.append([f"SD000{i}", None, None, None, f"Тема {i}", f"Вопрос {i}", f"Ответ {i}", None, None, None])
    # Аналитика 1 (column H) merged over rows 3-5 and 6-7; Аналитика 2 (I) set on row 3 only, unmerged.
    rows[2][7:9] = ["Оборудование", "Принтеры"]
    rows[5][7] = "Сеть"
    path = write_xlsx(tmp_path / "merged.xlsx", rows, merges=["H3:H5", "H6:H7", "A1:J1"])
    result = read_kb(path)
    check_accounting(result)
    assert [e.categories for e in result.entries] == [
        ("Оборудование", "Принтеры"),
        ("Оборудование",),
        ("Оборудование",),
        ("Сеть",),
        ("Сеть",),
    ]


def test_merge_ranges_are_found_across_chunk_boundaries(tmp_path: Path) -> None:
    merges = "".join(f'<x:mergeCell ref="H{r}:H{r + 1}"/>' for r in range(2, 200_000, 2))
    part = b"<x:worksheet><x:sheetData>" + b" " * 1_048_000 + b"</x:sheetData>"
    part += f'<x:mergeCells count="99999">{merges}</x:mergeCells></x:worksheet>'.encode()
    path = tmp_path / "book.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("xl/worksheets/sheet1.xml", part)
    ranges = _xlsx_merged_ranges(path, "xl/worksheets/sheet1.xml")
    assert len(ranges) == 99_999
    assert ranges[0] == (8, 2, 8, 3) and ranges[-1] == (8, 199_998, 8, 199_999)
    assert _xlsx_merged_ranges(path, None) == []


def test_wrong_sheet_dimension_does_not_cut_rows(tmp_path: Path) -> None:
    rows = [FAQ_HEADER] + [(f"Т{i}", f"Вопрос {i}?", f"Ответ {i}", "К1", "К2") for i in range(3)]
    path = write_xlsx(tmp_path / "kb.xlsx", rows)
    patched = tmp_path / "patched.xlsx"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(patched, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data, n = re.subn(rb'<dimension ref="[^"]+"', b'<dimension ref="A1"', data)
                assert n == 1
            dst.writestr(item, data)
    result = read_kb(patched)
    assert [e.categories for e in result.entries] == [("К1", "К2")] * 3


def test_every_matching_sheet_is_read_and_others_reported(tmp_path: Path) -> None:
    first = [FAQ_HEADER, ("Т", "Вопрос 1?", "Ответ 1", "A", None)]
    second = [("Справочник FAQ, часть 2",), (), FAQ_HEADER, ("Т", "Вопрос 2?", "Ответ 2", "B", None)]
    notes = [("Эта книга содержит FAQ",), ("Заполняйте по образцу",)]
    path = write_xlsx(tmp_path / "kb.xlsx", first, more_sheets={"Инструкция": notes, "Часть 2": second})
    result = read_kb(path)
    check_accounting(result)
    assert result.sheets == ["Лист1", "Часть 2"]
    assert [e.origin for e in result.entries] == ["kb.xlsx!Лист1:2", "kb.xlsx!Часть 2:4"]
    assert result.warnings == ["kb.xlsx, sheet 'Инструкция' skipped: no header row with the faq columns"]


def test_progress_bar_goes_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    read_kb(write_xlsx(tmp_path / "kb.xlsx", [FAQ_HEADER, ("Т", "Вопрос?", "Ответ", None, None)]), progress=True)
    read_kb(write_csv(tmp_path / "kb.csv", [FAQ_HEADER, ("Т", "Вопрос?", "Ответ", None, None)]), progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "kb.xlsx" in captured.err and "kb.csv" in captured.err


# -- CSV ------------------------------------------------------------------------------------------

CYRILLIC_ROWS = [
    ("Вопрос", "Ответ"),
    ("Не работает принтер в бухгалтерии", "Перезапустите службу печати; проверьте очередь"),
    ("Как подключиться к VPN из дома?", 'Установите клиент, введите логин и одноразовый код из "Токена"'),
]


@pytest.mark.parametrize(
    ("encoding", "delimiter", "note"),
    [
        ("utf-8", ",", None),
        ("utf-8-sig", ";", None),
        ("utf-16", "\t", None),
        ("cp1251", ";", "decoded as cp1251"),
        ("koi8-r", ",", "decoded as koi8-r"),
    ],
)
def test_csv_encodings_and_delimiters(tmp_path: Path, encoding: str, delimiter: str, note: str | None) -> None:
    path = write_csv(tmp_path / "kb.csv", CYRILLIC_ROWS, delimiter=delimiter, encoding=encoding)
    result = read_kb(path, mapping={"question": "вопрос", "answer": "ответ"})
    check_accounting(result)
    assert [(e.question, e.answer) for e in result.entries] == CYRILLIC_ROWS[1:]
    if note is None:
        assert result.warnings == []
    else:
        [warning] = result.warnings
        assert warning.startswith("kb.csv: not UTF-8") and warning.endswith(note)


def test_csv_with_broken_utf8_bytes_is_read_with_replacements(tmp_path: Path) -> None:
    path = tmp_path / "kb.csv"
    path.write_bytes("Вопрос,Ответ\nГде справка?,Ответ тут\n".encode() + b"\xff\xfe,bad\n")
    result = read_kb(path, mapping={"question": "Вопрос", "answer": "Ответ"})
    assert [e.question for e in result.entries] == ["Где справка?", "\ufffd\ufffd"]
    [warning] = result.warnings
    assert "invalid UTF-8 at byte" in warning


def test_csv_rows_are_numbered_as_records(tmp_path: Path) -> None:
    rows = [
        ("Вопрос из БЗ", "Ответ из БЗ"),
        ("Первый", "Строка 1\nСтрока 2\nСтрока 3"),
        ("Второй", None),
    ]
    result = read_kb(write_csv(tmp_path / "kb.csv", rows))
    assert result.entries[0].answer == "Строка 1\nСтрока 2\nСтрока 3"
    [error] = result.rejected
    assert str(error) == "kb.csv, row 3, column 'Ответ из БЗ': empty answer"


def test_csv_with_an_unclosed_quote_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "kb.csv"
    text = 'Вопрос из БЗ,Ответ из БЗ\nq1,"oops\n' + "\n".join(f"q{i},a{i}" for i in range(3000)) + "\n"
    path.write_text(text, encoding="utf-8")
    result = read_kb(path)
    check_accounting(result)
    assert result.rows_read == 1  # the quote swallowed the rest of the file into one field
    [error] = result.rejected
    assert error.row == 2 and "unclosed quote" in error.reason


# -- eval cases -----------------------------------------------------------------------------------


def test_cases_from_a_rutube_shaped_workbook(tmp_path: Path) -> None:
    header: tuple[str, ...] = ("Вопрос пользователя", "Ответ сотрудника", "Вопрос из БЗ", "Ответ из БЗ")
    header += ("Классификатор 1 уровня", "Классификатор 2 уровня")
    rows = [
        header,
        (
            "Здравствуйте, не грузится видео",
            "Добрый день! Очистите кэш.",
            "Видео?",
            "Очистите кэш.",
            "ВИДЕО",
            "Плеер",
        ),
        ("Как удалить канал", "Добрый день!", "Удаление?", "В настройках канала.", "АККАУНТ", None),
        (None, "Добрый день!", "Удаление?", "В настройках канала.", "АККАУНТ", None),
    ]
    cases, errors = read_cases(write_xlsx(tmp_path / "cases.xlsx", rows))
    assert cases == [
        EvalCase("Здравствуйте, не грузится видео", "Очистите кэш.", ("ВИДЕО", "Плеер"), 2),
        EvalCase("Как удалить канал", "В настройках канала.", ("АККАУНТ",), 3),
    ]
    assert [str(e) for e in errors] == ["cases.xlsx, sheet 'Лист1', row 4, column 'Вопрос пользователя': empty query"]
    # Explicit columns override the defaults.
    cases, _errors = read_cases(tmp_path / "cases.xlsx", query_column="Вопрос из БЗ", answer_column="ответ сотрудника")
    assert (cases[0].query, cases[0].gold_answer) == ("Видео?", "Добрый день! Очистите кэш.")


@pytest.mark.parametrize("header", [("query", "answer"), ("Question", "Answer"), ("вопрос", "ответ")])
def test_cases_from_csv_with_synonym_headers(tmp_path: Path, header: tuple[str, str]) -> None:
    path = write_csv(tmp_path / "cases.csv", [header, ("где отпуск?", "в портале"), ("пусто", "")])
    cases, errors = read_cases(path)
    assert cases == [EvalCase("где отпуск?", "в портале", (), 2)]
    assert [(e.row, e.column, e.reason) for e in errors] == [(3, header[1], "empty answer")]


def test_cases_without_the_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "cases.csv", [("Текст", "Ответ сотрудника"), ("a", "b")])
    with pytest.raises(KBImportError, match=r"cases.csv: expected a query column .* Headers found: 'Текст'"):
        read_cases(path)
    with pytest.raises(KBImportError, match="expected column 'Запрос' and 'Ответ'"):
        read_cases(path, query_column="Запрос", answer_column="Ответ")
    cases, _ = read_cases(path, query_column="Текст", answer_column="Ответ сотрудника")
    assert cases == [EvalCase("a", "b", (), 2)]


def test_cases_sheet_without_columns_is_reported(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "cases.xlsx", [("query", "answer"), ("q", "a")], more_sheets={"notes": [("x",)]})
    cases, errors = read_cases(path)
    assert len(cases) == 1
    [error] = errors
    assert (error.sheet, error.row) == ("notes", 0)
    assert error.reason.startswith("sheet skipped")


# -- the RUTUBE dataset ---------------------------------------------------------------------------


@needs_rutube
def test_rutube_knowledge_base() -> None:
    result = read_kb(RUTUBE / "knowledge_base.xlsx")
    check_accounting(result)
    assert result.preset == "faq"
    assert result.rows_read == 326
    # Rows 201-208 are exact copies of rows 193-200 (all five columns): rejected as duplicates.
    assert len(result.entries) == 318
    assert [(e.row, e.reason) for e in result.rejected] == [
        (row, f"duplicate of row {row - 8}: same question, title, answer and categories") for row in range(201, 209)
    ]
    assert len({e.id for e in result.entries}) == 318
    assert all(len(e.categories) == 2 for e in result.entries)
    assert [e.id for e in read_kb(RUTUBE / "knowledge_base.xlsx").entries] == [e.id for e in result.entries]


@needs_rutube
def test_rutube_cases() -> None:
    cases, errors = read_cases(RUTUBE / "cases_dev.xlsx")
    assert errors == []
    assert len(cases) == 401
    assert all(c.query and c.gold_answer and len(c.categories) == 2 for c in cases)
    kb_answers = {normalize_for_match(e.answer) for e in read_kb(RUTUBE / "knowledge_base.xlsx").entries}
    # In the dataset itself, four gold answers are worded differently from every FAQ answer.
    assert [c.row for c in cases if normalize_for_match(c.gold_answer) not in kb_answers] == [
        92,
        93,
        370,
        402,
    ]
