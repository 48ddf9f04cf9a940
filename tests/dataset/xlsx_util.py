"""Small helpers that write test spreadsheets into a temporary folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import openpyxl

Rows = Sequence[Sequence[object]]

TICKET_HEADER = (
    "Код",
    "Категория",
    "Время регистрации",
    "Рабочая группа",
    "Краткое описание",
    "Описание",
    "Решение",
    "Аналитика 1",
    "Аналитика 2",
    "Аналитика 3",
)
FAQ_HEADER = ("Тема", "Вопрос из БЗ", "Ответ из БЗ", "Классификатор 1 уровня", "Классификатор 2 уровня")


def write_xlsx(
    path: Path,
    rows: Rows,
    *,
    sheet: str = "Лист1",
    merges: Sequence[str] = (),
    more_sheets: dict[str, Rows] | None = None,
) -> Path:
    """A workbook with ``rows`` on its first sheet (``merges``: ranges such as ``"H3:H5"``)."""
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = sheet
    for row in rows:
        ws.append(list(row))
    for ref in merges:
        ws.merge_cells(ref)
    for title, extra in (more_sheets or {}).items():
        other = wb.create_sheet(title)
        for row in extra:
            other.append(list(row))
    wb.save(path)
    return path


def write_csv(path: Path, rows: Rows, *, delimiter: str = ",", encoding: str = "utf-8") -> Path:
    lines = []
    for row in rows:
        cells = []
        for value in row:
            text = "" if value is None else str(value)
            if any(ch in text for ch in (delimiter, '"', "\n")):
                text = '"' + text.replace('"', '""') + '"'
            cells.append(text)
        lines.append(delimiter.join(cells))
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    return path
