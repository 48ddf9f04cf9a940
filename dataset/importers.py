"""Importers for knowledge-base files and evaluation-case files (``.xlsx`` and CSV).

:func:`read_kb` turns a spreadsheet into :class:`~rag.models.KBEntry` objects, :func:`read_cases`
turns an evaluation file into :class:`EvalCase` objects. Both stream the file row by row (openpyxl in
read-only mode, ``csv`` over an incremental decoder), so memory stays bounded by what they return, and
both follow one rule for bad data: every non-blank data row becomes either a result or a
:class:`RowError` that names the sheet, the row as a spreadsheet user numbers it, the column and the
reason. A file that cannot be read at all raises :class:`KBImportError`.

Column layouts ("presets") are recognized from the header row, which may sit below a title row:

* ``ticket_export`` -- the helpdesk's Excel export of tickets (``Код``, ``Краткое описание``,
  ``Описание``, ``Решение``, ``Аналитика 1..3``);
* ``faq`` -- a FAQ table (``Тема``, ``Вопрос из БЗ``, ``Ответ из БЗ``, ``Классификатор N уровня``);
* ``generic`` -- any other columns, through an explicit ``mapping`` (``--map question=COLUMN``).
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import re
import sys
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from itertools import count, islice
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

import openpyxl
from openpyxl.utils.cell import range_boundaries
from openpyxl.utils.exceptions import InvalidFileException
from tqdm import tqdm

from helpdesk_errors import HelpdeskError
from rag.models import KBEntry, stable_id
from rag.text import clean_text, normalize_for_match

__all__ = [
    "MAX_TEXT_CHARS",
    "PRESETS",
    "EvalCase",
    "ImportResult",
    "KBImportError",
    "Preset",
    "RowError",
    "TicketRecord",
    "TicketsResult",
    "read_cases",
    "read_kb",
    "read_tickets",
]

logger = logging.getLogger(__name__)

#: Longer cell texts are rejected: no real question or answer is that long, a CSV field is only this
#: long when a stray quote swallowed the rows after it.
MAX_TEXT_CHARS = 20_000
#: The header row is looked for in this many rows from the top (exports put a title row above it).
HEADER_SCAN_ROWS = 10
XLSX_SUFFIXES = (".xlsx", ".xlsm")
CSV_SUFFIXES = (".csv", ".tsv", ".txt")
#: csv's default limit (131,072 characters) would abort the import on one oversized field; with a
#: higher limit such a field reaches the row checks and is rejected as "text too long" instead.
_CSV_FIELD_LIMIT = 1_000_000
_CSV_DELIMITERS = (",", ";", "\t")
_SAMPLE_BYTES = 256 * 1024
_CHUNK_BYTES = 1 << 20

T = TypeVar("T")


class KBImportError(HelpdeskError):
    """The file as a whole cannot be imported; the message names the file and the problem."""


@dataclass(frozen=True)
class RowError:
    """One data row that was not imported, and why.

    ``row`` is 1-based as a spreadsheet shows it (0: the whole sheet was skipped); ``sheet`` is empty
    for CSV files; ``column`` is the header of the offending column.
    """

    sheet: str
    row: int
    column: str
    reason: str
    file: str = ""

    def __str__(self) -> str:
        parts = [self.file] if self.file else []
        if self.sheet:
            parts.append(f"sheet '{self.sheet}'")
        if self.row:
            parts.append(f"row {self.row}")
        if self.column:
            parts.append(f"column '{self.column}'")
        where = ", ".join(parts)
        return f"{where}: {self.reason}" if where else self.reason


@dataclass
class ImportResult:
    """What :func:`read_kb` got from a file.

    ``rows_read`` counts non-blank data rows: ``rows_read == len(entries) + len(rejected)``;
    fully blank rows are counted in ``blank_rows``. ``warnings`` lists what the user should know but
    that concerns no single row: skipped sheets, a CSV decoded with a fallback encoding, missing
    optional columns, ticket codes that could not serve as ids.
    """

    entries: list[KBEntry]
    rejected: list[RowError]
    preset: str
    rows_read: int
    source: str
    warnings: list[str] = field(default_factory=list)
    blank_rows: int = 0
    #: The sheets that were imported (empty for CSV files).
    sheets: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for logs and the CLI."""
        text = (
            f"{self.source}: {self.rows_read} rows read ({self.preset}): {len(self.entries)} entries, "
            f"{len(self.rejected)} rejected"
        )
        if self.blank_rows:
            text += f", {self.blank_rows} blank rows skipped"
        if self.warnings:
            text += f", {len(self.warnings)} warning(s)"
        return text


@dataclass(frozen=True)
class Preset:
    """A column layout: which header feeds which :class:`KBEntry` field.

    Headers are compared after :func:`clean_text`, case folding and ``ё`` -> ``е``. ``question`` lists
    headers tried in order (the first non-empty cell wins). A sheet matches when it has the first
    question header, the answer header and every header in ``required``; the other columns are
    optional.
    """

    name: str
    description: str
    question: tuple[str, ...] = ()
    answer: str = ""
    title: str = ""
    id_column: str = ""
    categories: tuple[str, ...] = ()
    #: Namespace of ids taken from ``id_column`` (``stable_id(source, id_namespace, value)``).
    id_namespace: str = "id"
    #: True for ticket codes, which an anonymized export masks (``SDXXXXXX``) or repeats: a code is
    #: then used as the id only when it is unique in the file. False: a repeated id is an error.
    lenient_ids: bool = False
    required: tuple[str, ...] = ()

    def required_headers(self) -> tuple[str, ...]:
        named = (*self.question[:1], *([self.answer] if self.answer else []), *self.required)
        return tuple(dict.fromkeys(named))

    def headers(self) -> tuple[str, ...]:
        named = (*self.question, self.answer, self.title, self.id_column, *self.categories, *self.required)
        return tuple(dict.fromkeys(h for h in named if h))


PRESETS: dict[str, Preset] = {
    "ticket_export": Preset(
        name="ticket_export",
        description="ticket export: Код, Краткое описание, Описание, Решение, Аналитика 1-3",
        question=("Описание", "Краткое описание"),
        answer="Решение",
        title="Краткое описание",
        id_column="Код",
        categories=("Аналитика 1", "Аналитика 2", "Аналитика 3"),
        id_namespace="code",
        lenient_ids=True,
    ),
    "faq": Preset(
        name="faq",
        description="FAQ: Тема, Вопрос из БЗ, Ответ из БЗ, Классификатор 1 уровня, Классификатор 2 уровня",
        question=("Вопрос из БЗ",),
        answer="Ответ из БЗ",
        title="Тема",
        categories=("Классификатор 1 уровня", "Классификатор 2 уровня"),
    ),
    "generic": Preset(
        name="generic",
        description="any columns, mapped explicitly: --map question=COLUMN --map answer=COLUMN",
    ),
}
_DETECTABLE = ("ticket_export", "faq")
_MAP_HINT = "map the columns explicitly: --map question=COLUMN --map answer=COLUMN"
_MAPPING_FIELDS = "question, answer, title, id, category1..category3, categories (comma-separated headers)"
_CATEGORY_FIELD = re.compile(r"category([1-9])")

# Column headers read_cases() recognizes without flags, best first.
_QUERY_HEADERS = (
    "вопрос пользователя",
    "запрос пользователя",
    "вопрос клиента",
    "query",
    "user query",
    "user question",
    "request",
    "question",
    "вопрос",
    "запрос",
    "обращение",
    "текст обращения",
    "описание",
)
_ANSWER_HEADERS = (
    "ответ из бз",
    "gold answer",
    "gold_answer",
    "expected answer",
    "эталонный ответ",
    "правильный ответ",
    "answer",
    "ответ",
    "решение",
)
_CASE_CATEGORY = re.compile(
    r"(?:классификатор (\d) уровня|категория (\d) уровня|аналитика (\d)|category ?_?(\d)|level ?_?(\d))"
)


@dataclass(frozen=True)
class EvalCase:
    """One evaluation case: a user's query and the knowledge-base answer that resolves it."""

    query: str
    gold_answer: str
    categories: tuple[str, ...]
    #: The row in the file, 1-based as a spreadsheet shows it.
    row: int


# --------------------------------------------------------------------------------------------------
# Cells and headers


def _cell_text(value: object) -> str:
    """A cell as clean text; numbers and dates as a person would type them."""
    if value is None:
        return ""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, datetime):
        if value.time() == time(0):
            return value.date().isoformat()
        spec = "minutes" if value.second == 0 and value.microsecond == 0 else "seconds"
        return value.isoformat(sep=" ", timespec=spec)
    if isinstance(value, date | time):
        return value.isoformat()
    return clean_text(str(value))


def _norm_header(value: object) -> str:
    return " ".join(_cell_text(value).casefold().replace("ё", "е").split())


def _is_blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not clean_text(value))


def _quoted(headers: Sequence[str], limit: int = 30) -> str:
    shown = [f"'{h}'" for h in headers[:limit]]
    if len(headers) > limit:
        shown.append(f"... ({len(headers) - limit} more)")
    return ", ".join(shown) if shown else "(none)"


# --------------------------------------------------------------------------------------------------
# Tables: a sheet of a workbook, or a CSV file, as a stream of rows


@dataclass
class _Table:
    #: Sheet title; empty for a CSV file.
    sheet: str
    #: Raw rows from row 1 on (sequences of cell values; shorter rows mean trailing empty cells).
    rows: Iterator[Sequence[object]]
    #: Merged ranges as (min_col, min_row, max_col, max_row), 1-based; computed on demand.
    merged_ranges: Callable[[], list[tuple[int, int, int, int]]]


@dataclass
class _Header(Generic[T]):
    row: int
    cells: list[str]
    match: T
    #: The data rows below the header, numbered.
    rows: Iterator[tuple[int, Sequence[object]]]


def _find_header(table: _Table, match: Callable[[list[str]], T | None]) -> _Header[T] | list[str]:
    """The header row among the first rows of ``table``, or (when none matches) the likeliest header.

    ``match`` gets a row's cells as clean text and returns something (a layout) when the row is the
    header. Only the rows up to the header are read here; the rest stay in the stream.
    """
    guess: list[str] = []
    for number, row in enumerate(islice(table.rows, HEADER_SCAN_ROWS), start=1):
        cells = [_cell_text(v) for v in row]
        found = match(cells)
        if found is not None:
            return _Header(number, cells, found, zip(count(number + 1), table.rows, strict=False))
        if sum(1 for c in cells if c) > sum(1 for c in guess if c):
            guess = cells
    return [c for c in guess if c]


class _MergeFill:
    """Gives a None cell inside a vertically merged range the value of the range's top cell.

    That is what a person sees in Excel, and what read-only openpyxl (which reports only the top
    cell) loses. Rows arrive in order, so each column keeps its sorted spans and a cursor.
    """

    def __init__(self, ranges: Sequence[tuple[int, int, int, int]], columns: Sequence[int]) -> None:
        wanted = set(columns)
        self._spans: dict[int, list[tuple[int, int]]] = {}
        for min_col, min_row, _max_col, max_row in ranges:
            if min_col - 1 in wanted and max_row > min_row:
                self._spans.setdefault(min_col - 1, []).append((min_row, max_row))
        for spans in self._spans.values():
            spans.sort()
        self._cursor = dict.fromkeys(self._spans, 0)
        self._anchor: dict[int, object] = {}

    def __bool__(self) -> bool:
        return bool(self._spans)

    def apply(self, row: int, cells: list[object]) -> None:
        for col, spans in self._spans.items():
            i = self._cursor[col]
            while i < len(spans) and spans[i][1] < row:
                i += 1
            self._cursor[col] = i
            if i == len(spans) or spans[i][0] > row:
                continue
            if spans[i][0] == row:
                self._anchor[col] = cells[col]
            elif cells[col] is None:
                cells[col] = self._anchor.get(col)


@dataclass
class _Counts:
    read: int = 0
    blank: int = 0


def _data_rows(
    table: _Table, header: _Header[Any], merge_columns: Sequence[int], counts: _Counts
) -> Iterator[tuple[int, list[object]]]:
    """Non-blank data rows padded to the header's width, merged category cells filled in."""
    width = len(header.cells)
    fill = _MergeFill(table.merged_ranges(), merge_columns) if merge_columns else None
    for number, row in header.rows:
        cells = list(row[:width])
        if len(cells) < width:
            cells.extend([None] * (width - len(cells)))
        blank = all(_is_blank(v) for v in cells)
        if fill:
            fill.apply(number, cells)
        if blank:
            counts.blank += 1
            continue
        counts.read += 1
        yield number, cells


_MERGE_REF = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?mergeCell\b[^>]*?\bref=\"([A-Za-z]{1,3}\d+:[A-Za-z]{1,3}\d+)\"")


def _xlsx_merged_ranges(path: Path, member: str | None) -> list[tuple[int, int, int, int]]:
    """Merged ranges of one sheet, read from its XML part without building a tree.

    Read-only openpyxl does not expose ``ws.merged_cells``, and loading the workbook normally costs
    memory in proportion to the sheet. ``<mergeCells>`` follows ``<sheetData>`` in the part, so the
    part is scanned in 1 MiB chunks: memory stays constant, the price is one extra decompression pass,
    paid only for sheets whose layout has category columns.
    """
    if member is None:
        return []
    ranges: list[tuple[int, int, int, int]] = []
    buffer = b""
    with zipfile.ZipFile(path) as archive, archive.open(member) as part:
        while True:
            chunk = part.read(_CHUNK_BYTES)
            buffer += chunk
            # Keep the last bytes for the next round: a <mergeCell> may straddle two chunks.
            limit = len(buffer) - 512 if chunk else len(buffer)
            keep = max(limit, 0)
            if b"mergeCell" in buffer:
                for m in _MERGE_REF.finditer(buffer):
                    if m.start() >= limit:
                        break
                    ranges.append(range_boundaries(m.group(1).decode("ascii")))
                    keep = max(keep, m.end())
            if not chunk:
                return ranges
            buffer = buffer[keep:]


@contextmanager
def _open_tables(path: Path, progress: bool, notes: list[str]) -> Iterator[Iterator[_Table]]:
    """The tables of an ``.xlsx`` workbook (one per worksheet) or of a CSV file (one)."""
    file = path.name
    if not path.is_file():
        raise KBImportError(f"{file}: file not found ({path})")
    size = path.stat().st_size
    if size == 0:
        raise KBImportError(f"{file}: the file is empty (0 bytes)")
    suffix = path.suffix.lower()
    if suffix not in XLSX_SUFFIXES + CSV_SUFFIXES:
        raise KBImportError(
            f"{file}: unsupported file type '{suffix or '(none)'}'; supported: "
            f"{', '.join(XLSX_SUFFIXES + CSV_SUFFIXES)} (save .xls and .ods files as .xlsx)"
        )
    with ExitStack() as stack, warnings.catch_warnings():
        # openpyxl warns about workbook features it drops (data validation, default styles); they do
        # not matter for reading values, and must not turn into errors under `-W error`.
        warnings.filterwarnings("ignore", category=UserWarning, module="openpyxl")
        if suffix in XLSX_SUFFIXES:
            yield _xlsx_tables(path, stack, progress, notes)
        else:
            yield _csv_tables(path, size, stack, progress, notes)


def _xlsx_tables(path: Path, stack: ExitStack, progress: bool, notes: list[str]) -> Iterator[_Table]:
    file = path.name
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True, keep_links=False)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError, SyntaxError) as exc:
        hint = " (if it is a CSV file, name it .csv)" if isinstance(exc, zipfile.BadZipFile) else ""
        raise KBImportError(f"{file}: cannot be read as an Excel workbook: {exc}{hint}") from exc
    stack.callback(workbook.close)
    sheets = list(workbook.worksheets)
    titles = {ws.title for ws in sheets}
    for name in workbook.sheetnames:
        if name not in titles:
            notes.append(f"{file}, sheet '{name}' is not a worksheet (a chart sheet?): skipped")
    sizes = [ws.max_row for ws in sheets]
    total = sum(sizes) if all(isinstance(n, int) for n in sizes) else None
    bar = stack.enter_context(tqdm(total=total, unit="row", desc=file, disable=not progress, file=sys.stderr))
    return (_xlsx_table(path, ws, bar) for ws in sheets)


def _xlsx_table(path: Path, ws: Any, bar: tqdm[Any]) -> _Table:
    # The <dimension> element may be wrong (some writers emit "A1"); openpyxl would then cut rows and
    # columns to it. Without dimensions it yields every row and cell the sheet has.
    ws.reset_dimensions()
    member: str | None = getattr(ws, "_worksheet_path", None)
    return _Table(
        sheet=ws.title,
        rows=_xlsx_rows(path.name, ws, bar),
        merged_ranges=lambda: _xlsx_merged_ranges(path, member),
    )


def _xlsx_rows(file: str, ws: Any, bar: tqdm[Any]) -> Iterator[Sequence[object]]:
    try:
        for row in ws.iter_rows(values_only=True):
            bar.update(1)
            if bar.total is not None and bar.n > bar.total:
                bar.total = bar.n
            yield row
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        KeyError,
        ValueError,
        OverflowError,
        SyntaxError,
    ) as exc:
        raise KBImportError(f"{file}, sheet '{ws.title}': the sheet cannot be read: {exc}") from exc


class _CountingReader(io.RawIOBase):
    """A raw binary stream that reports the bytes read to a progress bar."""

    def __init__(self, raw: io.FileIO, bar: tqdm[Any]) -> None:
        super().__init__()
        self._raw = raw
        self._bar = bar

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer)
        self._bar.update(n)
        return n


def _csv_tables(path: Path, size: int, stack: ExitStack, progress: bool, notes: list[str]) -> Iterator[_Table]:
    file = path.name
    encoding, errors, note, sample = _detect_encoding(path)
    if note:
        notes.append(f"{file}: {note}")
    delimiter = _sniff_delimiter(sample)
    logger.debug("%s: encoding %s, delimiter %r", file, encoding, delimiter)
    bar = stack.enter_context(
        tqdm(total=size, unit="B", unit_scale=True, desc=file, disable=not progress, file=sys.stderr)
    )
    raw = stack.enter_context(path.open("rb", buffering=0))
    text = io.TextIOWrapper(io.BufferedReader(_CountingReader(raw, bar)), encoding=encoding, errors=errors, newline="")
    stack.callback(text.close)
    previous_limit = csv.field_size_limit(max(_CSV_FIELD_LIMIT, csv.field_size_limit()))
    stack.callback(csv.field_size_limit, previous_limit)
    reader = csv.reader(text, delimiter=delimiter)
    return iter([_Table(sheet="", rows=_csv_rows(file, reader), merged_ranges=list)])


def _csv_rows(file: str, reader: Any) -> Iterator[Sequence[object]]:
    record = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise KBImportError(
                f"{file}, row {record + 1}: the CSV cannot be parsed from here on ({exc}); "
                'probably an unclosed quote (") in this row'
            ) from exc
        record += 1
        yield row


def _detect_encoding(path: Path) -> tuple[str, str, str, str]:
    """(encoding, errors, note, decoded sample) for a CSV file.

    UTF-8 (with or without BOM) is checked over the whole file in chunks, so a bad byte near the end
    cannot surprise the reader later. A file that fails it without any valid multi-byte sequence
    before the failure is a legacy Cyrillic file: Excel saves CSV in cp1251 on a Russian Windows;
    koi8-r is told apart by letter statistics. A UTF-8 file with a few broken bytes stays UTF-8 with
    the broken bytes replaced. The note is empty when plain UTF-8 worked.
    """
    with path.open("rb") as f:
        head = f.read(_SAMPLE_BYTES)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", "replace", "", head.decode("utf-16", errors="replace")
    bad_at, saw_multibyte = _first_utf8_error(path)
    if bad_at is None:
        return "utf-8-sig", "strict", "", head.decode("utf-8-sig", errors="ignore")
    if saw_multibyte:
        note = f"invalid UTF-8 at byte {bad_at}: undecodable bytes were replaced with '\ufffd'"
        return "utf-8-sig", "replace", note, head.decode("utf-8-sig", errors="replace")
    scores = {enc: _cyrillic_score(head.decode(enc, errors="replace")) for enc in ("cp1251", "koi8-r")}
    encoding = "koi8-r" if scores["koi8-r"] > scores["cp1251"] else "cp1251"
    note = f"not UTF-8 (invalid byte at offset {bad_at}); decoded as {encoding}"
    return encoding, "replace", note, head.decode(encoding, errors="replace")


def _first_utf8_error(path: Path) -> tuple[int | None, bool]:
    """Offset of the first invalid UTF-8 byte (None: valid), and whether valid non-ASCII came before."""
    offset = 0
    carry = b""
    saw_multibyte = False
    with path.open("rb") as f:
        while True:
            chunk = f.read(_CHUNK_BYTES)
            data = carry + chunk
            try:
                data.decode("utf-8")
                carry = b""
            except UnicodeDecodeError as exc:
                # A sequence cut by the chunk boundary is completed by the next chunk.
                if chunk and exc.reason == "unexpected end of data" and len(data) - exc.start < 4:
                    carry = data[exc.start :]
                    data = data[: exc.start]
                else:
                    return offset + exc.start, saw_multibyte or not data[: exc.start].isascii()
            saw_multibyte = saw_multibyte or not data.isascii()
            offset += len(data)
            if not chunk:
                return None, saw_multibyte


_RUSSIAN_FREQUENT = frozenset("оеаинтсрвлкмдпу")


def _cyrillic_score(text: str) -> int:
    """How Russian a decoding looks: frequent letters and lowercase letters (a wrong 8-bit decoding
    swaps case and scrambles the alphabet)."""
    score = 0
    for ch in text:
        if "а" <= ch <= "я" or ch == "ё":
            score += 2 if ch in _RUSSIAN_FREQUENT else 1
        elif "А" <= ch <= "Я" and ch.lower() in _RUSSIAN_FREQUENT:
            score += 1
    return score


def _sniff_delimiter(sample: str) -> str:
    """The delimiter among , ; tab that splits the first records most consistently into most columns."""
    lines = sample.splitlines(keepends=True)
    if len(lines) > 1:
        lines = lines[:-1]  # the sample may end inside a record
    text = "".join(lines[:200])
    best, best_score = ",", (-1.0, 0)
    for delimiter in _CSV_DELIMITERS:
        records = list(islice(csv.reader(io.StringIO(text), delimiter=delimiter), 50))
        widths = [len(r) for r in records if any(c.strip() for c in r)]
        if not widths:
            continue
        common = Counter(widths).most_common(1)[0][0]
        if common < 2:
            continue
        score = (sum(1 for w in widths if w == common) / len(widths), common)
        if score > best_score:
            best, best_score = delimiter, score
    return best


# --------------------------------------------------------------------------------------------------
# Knowledge-base import


@dataclass(frozen=True)
class _Col:
    index: int
    header: str


@dataclass(frozen=True)
class _Layout:
    preset: Preset
    question: tuple[_Col, ...]
    answer: _Col
    title: _Col | None
    id: _Col | None
    categories: tuple[_Col, ...]
    missing: tuple[str, ...]
    #: Number of the preset's headers found: decides between presets that both match.
    score: int


def _layout(preset: Preset, cells: list[str]) -> _Layout | None:
    index: dict[str, int] = {}
    for i, cell in enumerate(cells):
        index.setdefault(_norm_header(cell), i)
    if any(_norm_header(h) not in index for h in preset.required_headers()):
        return None

    def col(header: str) -> _Col | None:
        i = index.get(_norm_header(header)) if header else None
        return None if i is None else _Col(i, cells[i])

    questions = tuple(c for c in map(col, preset.question) if c is not None)
    answer = col(preset.answer)
    assert answer is not None  # a required header
    categories = tuple(c for c in map(col, preset.categories) if c is not None)
    missing = tuple(h for h in preset.headers() if _norm_header(h) not in index)
    found = len(preset.headers()) - len(missing)
    return _Layout(preset, questions, answer, col(preset.title), col(preset.id_column), categories, missing, found)


def _best_layout(presets: Sequence[Preset], cells: list[str]) -> _Layout | None:
    layouts = [lay for lay in (_layout(p, cells) for p in presets) if lay is not None]
    return max(layouts, key=lambda lay: lay.score, default=None)


def _choose_preset(file: str, preset: str | None, mapping: Mapping[str, str] | None) -> Preset | None:
    """The preset to read with, or None to detect it from the header row."""
    if preset is not None and preset not in PRESETS:
        raise KBImportError(f"{file}: unknown preset '{preset}'; known presets: {', '.join(PRESETS)}")
    base = PRESETS[preset] if preset is not None else None
    if mapping:
        return _apply_mapping(file, base if base is not None and base.name != "generic" else None, mapping)
    if base is not None and base.name == "generic":
        raise KBImportError(f"{file}: preset 'generic' needs a column mapping; {_MAP_HINT}")
    return base


def _apply_mapping(file: str, base: Preset | None, mapping: Mapping[str, str]) -> Preset:
    """A preset from an explicit mapping {field: header}, on top of ``base`` when one was named."""
    for name, header in mapping.items():
        if name not in ("question", "answer", "title", "id", "categories") and not _CATEGORY_FIELD.fullmatch(name):
            raise KBImportError(f"{file}: unknown mapping field '{name}'; the fields are: {_MAPPING_FIELDS}")
        if not clean_text(header):
            raise KBImportError(f"{file}: the mapping of '{name}' names no column")
    levels = sorted((k for k in mapping if _CATEGORY_FIELD.fullmatch(k)), key=lambda k: int(k[8:]))
    if "categories" in mapping and levels:
        raise KBImportError(f"{file}: map either 'categories' or {', '.join(levels)}, not both")
    categories: tuple[str, ...] | None = None
    if "categories" in mapping:
        categories = tuple(h.strip() for h in mapping["categories"].split(",") if h.strip())
    elif levels:
        categories = tuple(mapping[k] for k in levels)
    if base is None and not ("question" in mapping and "answer" in mapping):
        absent = " and ".join(f for f in ("question", "answer") if f not in mapping)
        raise KBImportError(f"{file}: the mapping needs {absent}; {_MAP_HINT}")
    base = base or PRESETS["generic"]
    mapped_headers = [v for k, v in mapping.items() if k != "categories"]
    if "categories" in mapping:
        mapped_headers.extend(categories or ())
    id_changed = "id" in mapping
    return replace(
        base,
        question=(mapping["question"],) if "question" in mapping else base.question,
        answer=mapping.get("answer", base.answer),
        title=mapping.get("title", base.title),
        id_column=mapping.get("id", base.id_column),
        categories=categories if categories is not None else base.categories,
        id_namespace="id" if id_changed else base.id_namespace,
        lenient_ids=base.lenient_ids and not id_changed,
        required=tuple(dict.fromkeys(mapped_headers)),
    )


def _no_rows_error(file: str, seen: list[tuple[str, list[str]]]) -> KBImportError:
    what = "the workbook has no rows" if any(sheet for sheet, _h in seen) else "the file has no rows"
    return KBImportError(f"{file}: {what}; expected a header row followed by data rows")


def _no_layout_error(file: str, chosen: Preset | None, seen: list[tuple[str, list[str]]]) -> KBImportError:
    found = "; ".join((f"sheet '{sheet}': " if sheet else "") + _quoted(headers) for sheet, headers in seen[:5])
    if all(not headers for _sheet, headers in seen):
        return _no_rows_error(file, seen)
    if chosen is None:
        expected = "; ".join(f"{name} ({PRESETS[name].description})" for name in _DETECTABLE)
        return KBImportError(
            f"{file}: no known column layout in the first {HEADER_SCAN_ROWS} rows. Headers found: {found}. "
            f"Expected presets: {expected}. Otherwise {_MAP_HINT}"
        )
    first_headers = seen[0][1] if seen else []
    present = {_norm_header(h) for h in first_headers}
    missing = [h for h in chosen.required_headers() if _norm_header(h) not in present]
    what = f"preset '{chosen.name}'"
    roles: dict[str, str] = {}
    if chosen.required:  # a mapping was given: say which field each missing header was mapped to
        what = "the mapping" if chosen.name == "generic" else f"{what} with the mapping"
        fields = [("question", chosen.question[0]), ("answer", chosen.answer), ("title", chosen.title)]
        fields += [("id", chosen.id_column)]
        fields += [(f"category{n}", h) for n, h in enumerate(chosen.categories, start=1)]
        roles = {h: f for f, h in reversed(fields) if h}
    named = ", ".join(f"'{h}'" + (f" (mapped to {roles[h]})" if h in roles else "") for h in missing)
    noun = "column" if len(missing) == 1 else "columns"
    return KBImportError(f"{file}: {noun} {named} of {what} not found. Headers found: {found}")


class _Record(NamedTuple):
    """A good row waiting for its id (ids depend on the whole file, see _assign_ids)."""

    sheet: int
    row: int
    question: str
    answer: str
    title: str
    categories: tuple[str, ...]
    explicit_id: str


def _kb_row(layout: _Layout, cells: list[object], number: int, sheet: int) -> _Record | tuple[str, str]:
    """A record, or (column header, reason) for a rejected row."""

    def text(col: _Col | None) -> str:
        return _cell_text(cells[col.index]) if col is not None else ""

    question, question_col = "", layout.question[0]
    for col in layout.question:
        question = text(col)
        if question:
            question_col = col
            break
    answer = text(layout.answer)
    title = text(layout.title)
    levels = [text(c) for c in layout.categories]
    while levels and not levels[-1]:
        levels.pop()
    if not question:
        also = " and ".join(f"'{c.header}'" for c in layout.question[1:])
        return layout.question[0].header, "empty question" + (f" ({also} empty too)" if also else "")
    if not answer:
        return layout.answer.header, "empty answer"
    checked: list[tuple[_Col | None, str]] = [(question_col, question), (layout.answer, answer)]
    checked.append((layout.title, title))
    checked.extend(zip(layout.categories, levels, strict=False))
    for column, value in checked:
        if column is not None and len(value) > MAX_TEXT_CHARS:
            return (
                column.header,
                f"text too long ({len(value):,} characters; the limit is {MAX_TEXT_CHARS:,})",
            )
    return _Record(sheet, number, question, answer, title, tuple(levels), text(layout.id))


_MASKED_CODE = re.compile(r"[^0-9]*[XxХх]{2,}[^0-9]*")


def _assign_ids(
    records: list[_Record], source: str, preset: Preset
) -> tuple[list[str | None], list[tuple[int, str, bool]], list[str]]:
    """Ids for the records: (id per record, None where rejected), rejected duplicates, notes.

    A rejected duplicate is (record index, reason, whether the id came from an id column).

    An id column gives ``stable_id(source, namespace, value)``. Otherwise the id is derived from the
    question, so that editing an answer updates the entry instead of creating a new one:
    ``stable_id(source, "q", question)``. When the question repeats in the file (a FAQ may answer
    one question per platform, a ticket export repeats templated descriptions), the title is added,
    and when question and title repeat too, the answer and categories. Escalating only where needed
    keeps most ids independent of the answer; ids stay the same on every import of the same file.
    Rows equal in all of these are duplicates: the first is kept, the others rejected.
    """
    notes: list[str] = []
    codes = Counter(r.explicit_id for r in records if r.explicit_id)
    unusable = 0

    def key(r: _Record, level: int) -> str:
        parts = [source, "q", normalize_for_match(r.question)]
        if level >= 1:
            parts += ["title", normalize_for_match(r.title)]
        if level >= 2:
            parts += ["answer", normalize_for_match(r.answer), "categories"]
            parts += [normalize_for_match(c) for c in r.categories]
        return stable_id(*parts)

    ids: list[str | None] = []
    from_column: list[bool] = []
    for r in records:
        code = r.explicit_id
        if code and preset.lenient_ids and (codes[code] > 1 or _MASKED_CODE.fullmatch(code)):
            unusable += 1
            code = ""
        ids.append(stable_id(source, preset.id_namespace, code) if code else key(r, 0))
        from_column.append(bool(code))
    del codes
    if unusable:
        notes.append(
            f"{unusable} rows have a '{preset.id_column}' that is masked or repeats in the file; "
            "their ids are derived from the question instead"
        )
    # Content ids of different levels never collide, so each round escalates exactly the records
    # whose current id repeats.
    for level in (1, 2):
        repeats = Counter(ids)
        for i, ident in enumerate(ids):
            if not from_column[i] and repeats[ident] > 1:
                ids[i] = key(records[i], level)

    repeats = Counter(ids)
    first: dict[str | None, int] = {}
    rejected: list[tuple[int, str, bool]] = []
    for i, ident in enumerate(ids):
        if repeats[ident] == 1:
            continue
        if ident not in first:
            first[ident] = i
            continue
        kept = records[first[ident]]
        where = f"row {kept.row}" if kept.sheet == records[i].sheet else f"row {kept.row} of another sheet"
        if from_column[i]:
            reason = f"duplicate id '{records[i].explicit_id}': already used in {where}"
        else:
            reason = f"duplicate of {where}: same question, title, answer and categories"
        rejected.append((i, reason, from_column[i]))
        ids[i] = None
    return ids, rejected, notes


def read_kb(
    path: Path | str,
    *,
    preset: str | None = None,
    mapping: dict[str, str] | None = None,
    source: str | None = None,
    progress: bool = False,
) -> ImportResult:
    """Read a knowledge base from an ``.xlsx`` or CSV file.

    The column layout is detected from the header row unless ``preset`` names one of
    :data:`PRESETS` or ``mapping`` maps fields to headers (``{"question": "Q", "answer": "A"}``;
    fields: question, answer, title, id, category1..category3, categories); a mapping given with a
    preset overrides that preset's columns. Every worksheet with the layout's header is read; the
    others are reported in ``warnings``. ``source`` (default: the file name) goes into the ids and
    ``KBEntry.source``. Raises :class:`KBImportError` when the file cannot be read.
    """
    file_path = Path(path)
    file = file_path.name
    source = source or file
    chosen = _choose_preset(file, preset, mapping)
    candidates = [chosen] if chosen is not None else [PRESETS[name] for name in _DETECTABLE]
    notes: list[str] = []
    records: list[_Record] = []
    errors: list[tuple[int, RowError]] = []
    layouts: dict[int, _Layout] = {}
    titles: dict[int, str] = {}
    seen: list[tuple[str, list[str]]] = []
    counts = _Counts()

    with _open_tables(file_path, progress, notes) as tables:
        for sheet_no, table in enumerate(tables):
            header = _find_header(table, partial(_best_layout, candidates))
            label = f"{file}, sheet '{table.sheet}'" if table.sheet else file
            if not isinstance(header, _Header):
                seen.append((table.sheet, header))
                if layouts:
                    notes.append(f"{label} skipped: no header row with the {candidates[0].name} columns")
                else:
                    notes.append(f"{label} skipped: no known header row (headers: {_quoted(header, 10)})")
                continue
            layout = header.match
            candidates = [layout.preset]  # every sheet is read with the layout of the first one
            layouts[sheet_no] = layout
            titles[sheet_no] = table.sheet
            if layout.missing:
                notes.append(f"{label}: no column {_quoted(layout.missing)} (optional)")
            merge_columns = [c.index for c in layout.categories]
            for number, cells in _data_rows(table, header, merge_columns, counts):
                outcome = _kb_row(layout, cells, number, sheet_no)
                if isinstance(outcome, _Record):
                    records.append(outcome)
                else:
                    column, reason = outcome
                    if not table.sheet and reason.startswith("text too long"):
                        reason += "; in a CSV file this is often an unclosed quote"
                    errors.append((sheet_no, RowError(table.sheet, number, column, reason, file)))

    if not layouts:
        raise _no_layout_error(file, chosen, seen)
    layout_preset = next(iter(layouts.values())).preset
    ids, duplicates, id_notes = _assign_ids(records, source, layout_preset)
    notes.extend(f"{file}: {note}" for note in id_notes)
    for i, reason, by_id_column in duplicates:
        r = records[i]
        lay = layouts[r.sheet]
        column = lay.id.header if by_id_column and lay.id is not None else lay.question[0].header
        errors.append((r.sheet, RowError(titles[r.sheet], r.row, column, reason, file)))
    # Records are turned into entries from the end, so that the two lists never both hold everything.
    entries: list[KBEntry] = []
    while records:
        r = records.pop()
        ident = ids.pop()
        if ident is not None:
            origin = f"{file}!{titles[r.sheet]}:{r.row}" if titles[r.sheet] else f"{file}:{r.row}"
            entries.append(
                KBEntry(
                    id=ident,
                    question=r.question,
                    answer=r.answer,
                    title=r.title,
                    categories=r.categories,
                    source=source,
                    origin=origin,
                )
            )
    entries.reverse()
    errors.sort(key=lambda e: (e[0], e[1].row))
    result = ImportResult(
        entries=entries,
        rejected=[e for _sheet, e in errors],
        preset=layout_preset.name,
        rows_read=counts.read,
        source=source,
        warnings=notes,
        blank_rows=counts.blank,
        sheets=[s for s in titles.values() if s],
    )
    for note in notes:
        logger.warning("%s", note)
    logger.info("%s", result.summary())
    return result


# --------------------------------------------------------------------------------------------------
# Evaluation cases


@dataclass(frozen=True)
class _CaseLayout:
    query: _Col
    answer: _Col
    categories: tuple[_Col, ...]


def _case_layout(query_column: str | None, answer_column: str | None, cells: list[str]) -> _CaseLayout | None:
    index: dict[str, int] = {}
    for i, cell in enumerate(cells):
        if cell:
            index.setdefault(_norm_header(cell), i)

    def pick(explicit: str | None, synonyms: Sequence[str]) -> _Col | None:
        for name in [explicit] if explicit else synonyms:
            i = index.get(_norm_header(name))
            if i is not None:
                return _Col(i, cells[i])
        return None

    query = pick(query_column, _QUERY_HEADERS)
    answer = pick(answer_column, _ANSWER_HEADERS)
    if query is None or answer is None or query.index == answer.index:
        return None
    levels: list[tuple[int, _Col]] = []
    for name, i in index.items():
        m = _CASE_CATEGORY.fullmatch(name)
        if m is not None:
            levels.append((int(next(g for g in m.groups() if g)), _Col(i, cells[i])))
    return _CaseLayout(query, answer, tuple(c for _level, c in sorted(levels, key=lambda lc: lc[0])))


def read_cases(
    path: Path | str,
    *,
    query_column: str | None = None,
    answer_column: str | None = None,
    progress: bool = False,
) -> tuple[list[EvalCase], list[RowError]]:
    """Read evaluation cases (a user query and its gold answer) from an ``.xlsx`` or CSV file.

    Without flags the query column is the first of ``Вопрос пользователя``, ``query``, ``question``,
    ``вопрос``, ... and the gold answer the first of ``Ответ из БЗ``, ``answer``, ``ответ``, ...;
    ``Классификатор N уровня`` / ``Аналитика N`` / ``categoryN`` columns give the categories. Rows
    without a query or an answer come back as :class:`RowError`; so do sheets without the columns
    (with ``row == 0``). Raises :class:`KBImportError` when no sheet has them.
    """
    file_path = Path(path)
    file = file_path.name
    cases: list[EvalCase] = []
    errors: list[RowError] = []
    seen: list[tuple[str, list[str]]] = []
    notes: list[str] = []
    counts = _Counts()
    matched = 0
    with _open_tables(file_path, progress, notes) as tables:
        for table in tables:
            header = _find_header(table, lambda cells: _case_layout(query_column, answer_column, cells))
            if not isinstance(header, _Header):
                seen.append((table.sheet, header))
                reason = f"sheet skipped: no query and answer columns (headers: {_quoted(header, 10)})"
                errors.append(RowError(table.sheet, 0, "", reason, file))
                continue
            matched += 1
            layout = header.match
            for number, cells in _data_rows(table, header, [c.index for c in layout.categories], counts):
                query = _cell_text(cells[layout.query.index])
                answer = _cell_text(cells[layout.answer.index])
                levels = [_cell_text(cells[c.index]) for c in layout.categories]
                while levels and not levels[-1]:
                    levels.pop()
                problem: tuple[str, str] | None = None
                if not query:
                    problem = (layout.query.header, "empty query")
                elif not answer:
                    problem = (layout.answer.header, "empty answer")
                else:
                    for col, value in ((layout.query, query), (layout.answer, answer)):
                        if len(value) > MAX_TEXT_CHARS:
                            problem = (col.header, f"text too long ({len(value):,} characters)")
                            break
                if problem is not None:
                    errors.append(RowError(table.sheet, number, problem[0], problem[1], file))
                else:
                    cases.append(EvalCase(query, answer, tuple(levels), number))
    for note in notes:
        logger.warning("%s", note)
    if not matched:
        if all(not headers for _sheet, headers in seen):
            raise _no_rows_error(file, seen)
        found = "; ".join((f"sheet '{s}': " if s else "") + _quoted(h) for s, h in seen[:5])
        wanted = [f"'{c}'" for c in (query_column, answer_column) if c]
        expected = (
            f"column {' and '.join(wanted)}"
            if wanted
            else "a query column (Вопрос пользователя, query, question, "
            "вопрос) and an answer column (Ответ из БЗ, answer, ответ)"
        )
        raise KBImportError(f"{file}: expected {expected}. Headers found: {found}")
    logger.info("%s: %d cases, %d rows rejected, %d blank", file, len(cases), len(errors), counts.blank)
    return cases, errors


# --------------------------------------------------------------------------------------------------
# Tickets (the replay of an export before go-live)

#: Ticket fields and the headers of the seed's export that feed them (``--map field=COLUMN`` overrides).
TICKET_COLUMNS: dict[str, str] = {
    "code": "Код",
    "kind": "Категория",
    "registered": "Время регистрации",
    "group": "Рабочая группа",
    "title": "Краткое описание",
    "description": "Описание",
    "resolution": "Решение",
    "category1": "Аналитика 1",
    "category2": "Аналитика 2",
    "category3": "Аналитика 3",
}
_TICKET_TEXT_FIELDS = ("code", "kind", "group", "title", "description", "resolution")
# "01.02.2024 10:15", "2024-02-01 10:15:00", "01/02/2024 10:15", with or without seconds or a time.
_TIME_FORMATS = (
    "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y", "%d.%m.%y %H:%M", "%d.%m.%y",
    "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y",
)
# Excel stores dates as days since 1899-12-30; a number in this range is a date 1954..2119 in a cell
# that lost its date format (a CSV saved from Excel, a column formatted as "General").
_EXCEL_EPOCH = datetime(1899, 12, 30)
_EXCEL_SERIAL_RANGE = (20_000.0, 80_000.0)


@dataclass(frozen=True)
class TicketRecord:
    """One ticket of an export: what was asked, when, and how an agent resolved it."""

    #: The row in the file, 1-based as a spreadsheet shows it, and the sheet (empty for CSV).
    row: int
    sheet: str
    code: str
    #: ``Категория``: incident, service request or change.
    kind: str
    #: ``Время регистрации``; None when the export has no such column or the cell is empty.
    registered: datetime | None
    group: str
    title: str
    description: str
    #: ``Решение``: what the agent wrote; empty for a ticket without one.
    resolution: str
    categories: tuple[str, ...]

    @property
    def text(self) -> str:
        """The request as the ticket pipeline sends it to the engine: subject, then description."""
        if self.title and not self.description.startswith(self.title):
            return f"{self.title}\n{self.description}"
        return self.description


@dataclass
class TicketsResult:
    """What :func:`read_tickets` got: ``rows_read == len(tickets) + len(rejected)``."""

    tickets: list[TicketRecord]
    rejected: list[RowError]
    rows_read: int
    source: str
    #: Whether the file has a registration-time column.
    has_time: bool
    warnings: list[str] = field(default_factory=list)
    blank_rows: int = 0


@dataclass(frozen=True)
class _TicketLayout:
    columns: dict[str, _Col]
    categories: tuple[_Col, ...]


def _ticket_headers(file: str, mapping: Mapping[str, str] | None) -> dict[str, str]:
    headers = dict(TICKET_COLUMNS)
    for name, header in (mapping or {}).items():
        if name not in TICKET_COLUMNS:
            raise KBImportError(f"{file}: unknown ticket field '{name}'; the fields are: {', '.join(TICKET_COLUMNS)}")
        if not clean_text(header):
            raise KBImportError(f"{file}: the mapping of '{name}' names no column")
        headers[name] = header
    return headers


def _ticket_layout(headers: Mapping[str, str], mapped: frozenset[str], cells: list[str]) -> _TicketLayout | None:
    index: dict[str, int] = {}
    for i, cell in enumerate(cells):
        if cell:
            index.setdefault(_norm_header(cell), i)
    columns = {
        name: _Col(index[_norm_header(h)], cells[index[_norm_header(h)]])
        for name, h in headers.items()
        if _norm_header(h) in index
    }
    # The header row: the description column (or the title) and one more ticket column; and every
    # column the user mapped explicitly.
    if "description" not in columns and "title" not in columns:
        return None
    if len(columns) < 2 or any(name not in columns for name in mapped):
        return None
    levels = tuple(columns[f"category{n}"] for n in (1, 2, 3) if f"category{n}" in columns)
    return _TicketLayout(columns, levels)


def parse_time(value: object) -> datetime | None:
    """A registration time from a cell: a date cell, an Excel serial number, or text in a common form.

    Returns None for an empty cell; raises ValueError (with the value) for one that is not a time.
    Aware times are converted to UTC and compared without their zone, like naive ones.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, date):
        return datetime.combine(value, time(0))
    if isinstance(value, int | float) and not isinstance(value, bool):
        if _EXCEL_SERIAL_RANGE[0] <= float(value) <= _EXCEL_SERIAL_RANGE[1]:
            return _EXCEL_EPOCH + timedelta(days=float(value))
        raise ValueError(f"{value!r} is a number, not a date")
    text = " ".join(clean_text(str(value)).split())
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"'{text[:40]}' is not a date and time (expected e.g. 01.02.2024 10:15)") from None
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def _ticket_row(layout: _TicketLayout, cells: list[object], number: int, sheet: str) -> TicketRecord | tuple[str, str]:
    cols = layout.columns
    texts = {name: (_cell_text(cells[cols[name].index]) if name in cols else "") for name in _TICKET_TEXT_FIELDS}
    levels = [_cell_text(cells[c.index]) for c in layout.categories]
    while levels and not levels[-1]:
        levels.pop()
    description = texts["description"] or texts["title"]
    if not description:
        what = " and ".join(f"'{cols[n].header}'" for n in ("description", "title") if n in cols)
        column = cols["description"].header if "description" in cols else cols["title"].header
        return column, f"empty request ({what} empty)"
    for name in ("title", "description", "resolution"):
        if len(texts[name]) > MAX_TEXT_CHARS:
            reason = f"text too long ({len(texts[name]):,} characters; the limit is {MAX_TEXT_CHARS:,})"
            return cols[name].header, reason
    registered = None
    if "registered" in cols:
        try:
            registered = parse_time(cells[cols["registered"].index])
        except ValueError as exc:
            return cols["registered"].header, f"unreadable registration time: {exc}"
    return TicketRecord(
        row=number, sheet=sheet, code=texts["code"], kind=texts["kind"], registered=registered,
        group=texts["group"], title=texts["title"], description=description, resolution=texts["resolution"],
        categories=tuple(levels),
    )


def read_tickets(
    path: Path | str, *, mapping: Mapping[str, str] | None = None, progress: bool = False
) -> TicketsResult:
    """Read a ticket export (the seed's shape, or any columns through ``mapping``) for the replay.

    Unlike :func:`read_kb` every ticket is kept — templated tickets repeat, and a ticket without a
    resolution is still a request — and the registration time is kept. The header row is found among
    the first rows (below a title row); ``mapping`` maps fields (code, kind, registered, group, title,
    description, resolution, category1..category3) to other headers. A row without any request text,
    with an unreadable time or with an overlong text is a :class:`RowError` naming row, column and
    reason. Raises :class:`KBImportError` when no sheet has the columns.
    """
    file_path = Path(path)
    file = file_path.name
    headers = _ticket_headers(file, mapping)
    mapped = frozenset(mapping or ())
    tickets: list[TicketRecord] = []
    errors: list[RowError] = []
    notes: list[str] = []
    seen: list[tuple[str, list[str]]] = []
    counts = _Counts()
    has_time = False
    matched = 0
    with _open_tables(file_path, progress, notes) as tables:
        for table in tables:
            header = _find_header(table, lambda cells: _ticket_layout(headers, mapped, cells))
            label = f"{file}, sheet '{table.sheet}'" if table.sheet else file
            if not isinstance(header, _Header):
                seen.append((table.sheet, header))
                notes.append(f"{label} skipped: no ticket columns (headers: {_quoted(header, 10)})")
                continue
            matched += 1
            layout = header.match
            has_time = has_time or "registered" in layout.columns
            absent = [h for name, h in headers.items() if name not in layout.columns]
            if absent:
                notes.append(f"{label}: no column {_quoted(absent)} (optional)")
            for number, cells in _data_rows(table, header, [c.index for c in layout.categories], counts):
                outcome = _ticket_row(layout, cells, number, table.sheet)
                if isinstance(outcome, TicketRecord):
                    tickets.append(outcome)
                else:
                    errors.append(RowError(table.sheet, number, outcome[0], outcome[1], file))
    if not matched:
        if all(not h for _s, h in seen):
            raise _no_rows_error(file, seen)
        found = "; ".join((f"sheet '{s}': " if s else "") + _quoted(h) for s, h in seen[:5])
        wanted = ", ".join(f"{name}='{h}'" for name, h in headers.items())
        raise KBImportError(
            f"{file}: no ticket columns found in the first {HEADER_SCAN_ROWS} rows. Headers found: {found}. "
            f"Expected the seed's export columns ({wanted}), or map them: field=COLUMN"
        )
    for note in notes:
        logger.warning("%s", note)
    logger.info("%s: %d tickets, %d rows rejected, %d blank", file, len(tickets), len(errors), counts.blank)
    return TicketsResult(
        tickets=tickets, rejected=errors, rows_read=counts.read, source=file, has_time=has_time,
        warnings=notes, blank_rows=counts.blank,
    )
