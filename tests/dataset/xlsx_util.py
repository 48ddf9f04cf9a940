"""Small helpers that write test spreadsheets into a temporary folder."""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import openpyxl
from openpyxl.utils.cell import get_column_letter

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


_CONTENT_TYPES = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
<Default Extension="xml" ContentType="application/xml"/>
<Override PartName="/xl/workbook.xml"
 ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>
<Override PartName="/xl/worksheets/sheet1.xml"
 ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>
</Types>"""
_ROOT_RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Target="xl/workbook.xml"
 Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"/>
</Relationships>"""
_WORKBOOK = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"
 xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">
<sheets><sheet name="{sheet}" sheetId="1" r:id="rId1"/></sheets></workbook>"""
_WORKBOOK_RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Target="worksheets/sheet1.xml"
 Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet"/>
</Relationships>"""


def write_inline_xlsx(path: Path, rows: Iterable[Sequence[str | None]], *, sheet: str = "Выгрузка") -> Path:
    """A one-sheet workbook with inline strings, streamed to disk row by row.

    That is how streaming writers (Apache POI's SXSSF, used by many ticket systems' exports) write
    big sheets: the text sits in the sheet XML, not in a shared-strings table that a reader must
    hold in memory, so a streaming reader needs memory for one row only.
    """
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        archive.writestr("_rels/.rels", _ROOT_RELS)
        archive.writestr("xl/workbook.xml", _WORKBOOK.format(sheet=escape(sheet)))
        archive.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
        with archive.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as part:
            part.write(
                b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
            )
            for number, row in enumerate(rows, start=1):
                cells = "".join(
                    f'<c r="{get_column_letter(col)}{number}" t="inlineStr"><is><t>{escape(value)}</t></is></c>'
                    for col, value in enumerate(row, start=1)
                    if value is not None
                )
                part.write(f'<row r="{number}">{cells}</row>'.encode())
            part.write(b"</sheetData></worksheet>")
    return path
