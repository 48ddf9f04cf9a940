"""Build ``dataset/sample_kb.xlsx`` from ``dataset/sample_kb.yaml``.

The YAML file is the reviewable source of truth of the sample knowledge base; the xlsx file is generated
from it in the shape of the seed's ticket export: a title row, a header row, then one ticket per row::

    python -m dataset.build_sample_kb            # regenerate dataset/sample_kb.xlsx
    python -m dataset.build_sample_kb --check    # exit 1 when the committed xlsx is out of date

The output is deterministic: rows keep the YAML order, datetimes come from the YAML, and the workbook's
document timestamps and zip entry times are pinned to the latest registration time, so rebuilding an
unchanged YAML gives the same bytes (with the same openpyxl version).
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import zipfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from openpyxl import Workbook, load_workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from helpdesk_errors import HelpdeskError

SAMPLE_YAML = Path(__file__).with_name("sample_kb.yaml")
SAMPLE_XLSX = Path(__file__).with_name("sample_kb.xlsx")

#: The header row of the seed's ticket export, in this order.
HEADER: tuple[str, ...] = (
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

#: Ticket code prefix -> value of the "Категория" column.
TICKET_TYPES: dict[str, str] = {
    "INC": "Инцидент",
    "REQ": "Запрос на обслуживание",
    "CHG": "Изменение",
}

SHEET_TITLE = "Вопросы и ответы"
DATETIME_FORMAT = "%Y-%m-%d %H:%M"
EXCEL_DATETIME_FORMAT = "DD.MM.YYYY HH:MM"
COLUMN_WIDTHS: tuple[int, ...] = (13, 24, 18, 32, 42, 60, 100, 30, 32, 34)
WRAPPED_COLUMNS = frozenset({"Краткое описание", "Описание", "Решение"})

_CODE_RE = re.compile(r"^(INC|REQ|CHG)\d{7}$")
_ENTRY_KEYS = frozenset(
    {"code", "type", "registered", "group", "subject", "description", "solution", "answer", "category"}
)
_REQUIRED_KEYS = ("code", "type", "registered", "group", "subject", "description", "category")
_TOP_KEYS = frozenset({"title", "answers", "entries"})
#: The C-accelerated safe loader when libyaml is available (the YAML is large), else the Python one.
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_CORE_MODIFIED_RE = re.compile(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)")


class SampleKBError(HelpdeskError):
    """The sample knowledge base YAML (or the xlsx built from it) is malformed."""


@dataclass(frozen=True)
class SampleRow:
    """One ticket of the export: the ten columns of :data:`HEADER`."""

    code: str
    ticket_type: str
    registered: datetime
    group: str
    subject: str
    description: str
    solution: str
    categories: tuple[str, str, str]

    def cells(self) -> tuple[str | datetime, ...]:
        return (
            self.code,
            self.ticket_type,
            self.registered,
            self.group,
            self.subject,
            self.description,
            self.solution,
            *self.categories,
        )


@dataclass(frozen=True)
class SampleKB:
    title: str
    rows: tuple[SampleRow, ...]


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SampleKBError(f"{where}: expected a non-empty string, got {value!r}")
    text = "\n".join(line.rstrip() for line in value.strip().splitlines())
    if text.startswith(("=", "+", "@")):
        # A cell starting with these would be read as a formula by spreadsheet programs.
        raise SampleKBError(f"{where}: text must not start with {text[0]!r}")
    return text


def _parse_entry(raw: object, index: int, answers: Mapping[str, str]) -> SampleRow:
    where = f"entries[{index}]"
    if not isinstance(raw, dict):
        raise SampleKBError(f"{where}: expected a mapping, got {type(raw).__name__}")
    if isinstance(raw.get("code"), str):
        where = f"entries[{index}] ({raw['code']})"
    unknown = set(raw) - _ENTRY_KEYS
    if unknown:
        raise SampleKBError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(_ENTRY_KEYS)}")
    missing = [key for key in _REQUIRED_KEYS if key not in raw]
    if missing:
        raise SampleKBError(f"{where}: missing keys {missing}")

    code = _text(raw["code"], f"{where}.code")
    match = _CODE_RE.match(code)
    if match is None:
        raise SampleKBError(f"{where}.code: {code!r} is not like INC0012345 / REQ0004321 / CHG0000123")
    ticket_type = _text(raw["type"], f"{where}.type")
    expected_type = TICKET_TYPES[match.group(1)]
    if ticket_type != expected_type:
        raise SampleKBError(
            f"{where}.type: {ticket_type!r} does not match the code prefix (expected {expected_type!r})"
        )

    registered_text = _text(raw["registered"], f"{where}.registered")
    try:
        registered = datetime.strptime(registered_text, DATETIME_FORMAT)
    except ValueError as e:
        raise SampleKBError(f"{where}.registered: {registered_text!r} is not 'YYYY-MM-DD HH:MM'") from e

    if ("solution" in raw) == ("answer" in raw):
        raise SampleKBError(f"{where}: give exactly one of 'solution' (text) or 'answer' (key of answers)")
    if "answer" in raw:
        key = raw["answer"]
        if not isinstance(key, str) or key not in answers:
            raise SampleKBError(f"{where}.answer: {key!r} is not a key of 'answers'")
        solution = answers[key]
    else:
        solution = _text(raw["solution"], f"{where}.solution")

    levels = raw["category"]
    if not isinstance(levels, list) or not 2 <= len(levels) <= 3:
        raise SampleKBError(f"{where}.category: expected a list of 2 or 3 category levels, got {levels!r}")
    names = [_text(level, f"{where}.category[{i}]") for i, level in enumerate(levels)]
    categories = (names[0], names[1], names[2] if len(names) == 3 else "")

    return SampleRow(
        code=code,
        ticket_type=ticket_type,
        registered=registered,
        group=_text(raw["group"], f"{where}.group"),
        subject=_text(raw["subject"], f"{where}.subject"),
        description=_text(raw["description"], f"{where}.description"),
        solution=solution,
        categories=categories,
    )


def parse_sample_kb(data: object) -> SampleKB:
    """Validate the loaded YAML document and turn it into export rows (in YAML order)."""
    if not isinstance(data, dict):
        raise SampleKBError("the document must be a mapping with 'title', 'answers' and 'entries'")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise SampleKBError(f"unknown top-level keys {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
    title = _text(data.get("title"), "title")

    raw_answers = data.get("answers") or {}
    if not isinstance(raw_answers, dict):
        raise SampleKBError("answers: expected a mapping of key -> answer text")
    answers = {str(key): _text(text, f"answers.{key}") for key, text in raw_answers.items()}

    raw_entries = data.get("entries")
    if not isinstance(raw_entries, list) or not raw_entries:
        raise SampleKBError("entries: expected a non-empty list")
    rows = tuple(_parse_entry(raw, i, answers) for i, raw in enumerate(raw_entries))

    duplicates = sorted(code for code, n in Counter(row.code for row in rows).items() if n > 1)
    if duplicates:
        raise SampleKBError(f"duplicate codes: {duplicates}")
    uses = Counter(raw["answer"] for raw in raw_entries if "answer" in raw)
    rarely_used = sorted(key for key in answers if uses[key] < 2)
    if rarely_used:
        raise SampleKBError(
            f"answers {rarely_used} are used by fewer than 2 entries: write them inline as 'solution'"
        )
    return SampleKB(title=title, rows=rows)


def load_sample_kb(path: Path = SAMPLE_YAML) -> SampleKB:
    """Read and validate the YAML source of the sample knowledge base."""
    try:
        with path.open(encoding="utf-8") as f:
            data: Any = yaml.load(f, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader
    except (OSError, yaml.YAMLError) as e:
        raise SampleKBError(f"cannot read {path}: {e}") from e
    try:
        return parse_sample_kb(data)
    except SampleKBError as e:
        raise SampleKBError(f"{path}: {e}") from e


def build_workbook(kb: SampleKB) -> Workbook:
    """The export as an openpyxl workbook: title row, bold header, frozen panes, filter, widths."""
    wb = Workbook()
    ws = wb.active
    ws.title = SHEET_TITLE

    ws.append([kb.title])
    ws["A1"].font = Font(bold=True, size=13)
    ws.append(list(HEADER))
    header_fill = PatternFill(fill_type="solid", start_color="FFD9E1F2", end_color="FFD9E1F2")
    for cell in ws[2]:
        cell.font = Font(bold=True)
        cell.fill = header_fill
        cell.alignment = Alignment(vertical="center", wrap_text=True)

    wrapped = {HEADER.index(name) for name in WRAPPED_COLUMNS}
    top = Alignment(vertical="top")
    top_wrapped = Alignment(vertical="top", wrap_text=True)
    for row in kb.rows:
        ws.append(list(row.cells()))
        for i, cell in enumerate(ws[ws.max_row]):
            cell.alignment = top_wrapped if i in wrapped else top
            if isinstance(cell.value, datetime):
                cell.number_format = EXCEL_DATETIME_FORMAT

    for i, width in enumerate(COLUMN_WIDTHS, start=1):
        ws.column_dimensions[get_column_letter(i)].width = width
    ws.freeze_panes = "A3"
    ws.auto_filter.ref = f"A2:{get_column_letter(len(HEADER))}{ws.max_row}"

    stamp = max(row.registered for row in kb.rows)
    wb.properties.title = kb.title
    wb.properties.creator = "helpdesk-assist"
    wb.properties.created = stamp
    wb.properties.modified = stamp
    return wb


def _pin_timestamps(xlsx: bytes, stamp: datetime) -> bytes:
    """Rewrite the zip with fixed entry times and a fixed ``dcterms:modified`` (openpyxl uses "now")."""
    modified = stamp.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    date_time = (stamp.year, stamp.month, stamp.day, stamp.hour, stamp.minute, stamp.second)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(xlsx)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = _CORE_MODIFIED_RE.sub(rb"\g<1>" + modified + rb"\g<2>", data)
            entry = zipfile.ZipInfo(info.filename, date_time=date_time)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o600 << 16
            dst.writestr(entry, data)
    return out.getvalue()


def xlsx_bytes(kb: SampleKB) -> bytes:
    buffer = io.BytesIO()
    build_workbook(kb).save(buffer)
    return _pin_timestamps(buffer.getvalue(), max(row.registered for row in kb.rows))


def write_xlsx(kb: SampleKB, path: Path = SAMPLE_XLSX) -> None:
    path.write_bytes(xlsx_bytes(kb))


def _cell_text(value: object) -> str:
    return "" if value is None else str(value)


def read_xlsx(path: Path = SAMPLE_XLSX) -> SampleKB:
    """Read an export written by :func:`write_xlsx` back into rows (to compare it with the YAML)."""
    wb = load_workbook(path, read_only=True)
    try:
        values = [tuple(row) for row in wb.worksheets[0].iter_rows(values_only=True)]
    finally:
        wb.close()
    if len(values) < 2:
        raise SampleKBError(f"{path}: expected a title row and a header row")
    header = tuple(_cell_text(v) for v in values[1][: len(HEADER)])
    if header != HEADER:
        raise SampleKBError(f"{path}: header row is {header}, expected {HEADER}")
    rows = []
    for n, cells in enumerate(values[2:], start=3):
        code, ticket_type, registered, *texts = (tuple(cells) + (None,) * len(HEADER))[: len(HEADER)]
        if not isinstance(registered, datetime):
            raise SampleKBError(f"{path}: row {n}: 'Время регистрации' is not a datetime: {registered!r}")
        group, subject, description, solution, level1, level2, level3 = (_cell_text(t) for t in texts)
        rows.append(
            SampleRow(
                code=_cell_text(code),
                ticket_type=_cell_text(ticket_type),
                registered=registered,
                group=group,
                subject=subject,
                description=description,
                solution=solution,
                categories=(level1, level2, level3),
            )
        )
    return SampleKB(title=_cell_text(values[0][0]), rows=tuple(rows))


def differences(expected: SampleKB, actual: SampleKB, limit: int = 10) -> list[str]:
    """Human-readable differences between two exports (empty when they have the same content)."""
    diffs: list[str] = []
    if expected.title != actual.title:
        diffs.append(f"title: {actual.title!r} != {expected.title!r}")
    if len(expected.rows) != len(actual.rows):
        diffs.append(f"row count: {len(actual.rows)} != {len(expected.rows)}")
    for want, got in zip(expected.rows, actual.rows, strict=False):
        if want != got:
            diffs.append(f"row {want.code}: {got} != {want}")
        if len(diffs) >= limit:
            break
    return diffs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dataset.build_sample_kb", description="Build the sample knowledge base xlsx."
    )
    parser.add_argument("--yaml", type=Path, default=SAMPLE_YAML, help="source YAML (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=SAMPLE_XLSX, help="xlsx to write (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="only check that --out matches the YAML")
    args = parser.parse_args(argv)

    try:
        kb = load_sample_kb(args.yaml)
        if args.check:
            diffs = differences(kb, read_xlsx(args.out)) if args.out.exists() else [f"{args.out} is missing"]
            if diffs:
                print(f"{args.out} is out of date; run python -m dataset.build_sample_kb", file=sys.stderr)
                print("\n".join(diffs), file=sys.stderr)
                return 1
            print(f"{args.out} is up to date ({len(kb.rows)} entries)")
            return 0
        write_xlsx(kb, args.out)
    except SampleKBError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {len(kb.rows)} entries")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
