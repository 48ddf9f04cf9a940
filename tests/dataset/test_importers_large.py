"""Big files are streamed: the importer's memory beyond the entries it returns stays small.

The files put most of their bytes in a column the importer does not keep (a long comment), so a
reader that loaded the file, or its rows, before building entries would exceed the bound: each test
checks that the comments alone, as Python strings, are larger than the bound.
"""

from __future__ import annotations

import csv
import gc
import random
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from dataset.importers import read_kb
from tests.dataset.xlsx_util import FAQ_HEADER, write_inline_xlsx

T = TypeVar("T")
#: Memory a read may use beyond what it returns, as a share of the file size.
BOUND = 0.4
_LETTERS = "абвгдеёжзийклмнопрстуфхцчшщъыьэюя"


class Generated:
    """Rows of a FAQ file with a long comment column; remembers how much comment text it made."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.words = ["".join(self.rng.choices(_LETTERS, k=self.rng.randint(2, 10))) for _ in range(20_000)]
        self.comment_chars = 0
        self.rows = 0

    def text(self, n: int) -> str:
        return " ".join(self.rng.choices(self.words, k=n))

    def row(self) -> tuple[str, ...]:
        self.rows += 1
        i = self.rows
        comment = self.text(600)
        self.comment_chars += len(comment)
        return (
            f"Тема {i % 40}",
            f"Вопрос {i}: {self.text(8)}?",
            self.text(30),
            f"УРОВЕНЬ {i % 7}",
            f"Раздел {i % 11}",
            comment,
        )

    def iter_rows(self, count: int) -> Iterator[tuple[str, ...]]:
        yield (*FAQ_HEADER, "Комментарий")
        for _ in range(count):
            yield self.row()


def traced(read: Callable[[], T]) -> tuple[T, int, int, float]:
    """(result, bytes still held after the call, peak bytes beyond those, seconds)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        started = time.perf_counter()
        result = read()
        seconds = time.perf_counter() - started
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, current - before, peak - current, seconds


@pytest.mark.slow
def test_a_50_mb_csv_is_streamed(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    data = Generated(seed=1)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(next(data.iter_rows(0)))
        while f.tell() < 50_000_000:
            writer.writerow(data.row())
    size = path.stat().st_size
    # A str of Cyrillic text takes 2 bytes a character: keeping the comments would break the bound.
    assert 2 * data.comment_chars > BOUND * size

    result, kept, transient, seconds = traced(lambda: read_kb(path))
    print(
        f"\n{size / 1e6:.1f} MB CSV: {seconds:.1f} s (traced), kept {kept / 1e6:.1f} MB, "
        f"transient {transient / 1e6:.1f} MB"
    )
    assert result.rows_read == len(result.entries) == data.rows
    assert result.rejected == []
    assert transient < BOUND * size
    assert kept < size  # the entries, without the comments
    path.unlink()


@pytest.mark.slow
def test_a_large_xlsx_is_streamed(tmp_path: Path) -> None:
    data = Generated(seed=2)
    path = write_inline_xlsx(tmp_path / "big.xlsx", data.iter_rows(5_000))
    size = path.stat().st_size
    assert size > 15_000_000
    assert 2 * data.comment_chars > BOUND * size

    result, kept, transient, seconds = traced(lambda: read_kb(path))
    print(
        f"\n{size / 1e6:.1f} MB xlsx: {seconds:.1f} s (traced), kept {kept / 1e6:.1f} MB, "
        f"transient {transient / 1e6:.1f} MB"
    )
    assert result.rows_read == len(result.entries) == 5_000
    assert result.entries[-1].origin == "big.xlsx!Выгрузка:5001"
    assert transient < BOUND * size
    assert kept < size
    path.unlink()
