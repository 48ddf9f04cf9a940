"""Benchmark of the replay before go-live (plugin.service.replay.analyze) on a 22,000-ticket export.

A measurement, not a test: it prints and records numbers and asserts nothing about them.

The export is written in the seed's shape (a title row, then ``Код, Категория, Время регистрации,
Рабочая группа, Краткое описание, Описание, Решение, Аналитика 1–3``) from the RUTUBE FAQ and the
sample knowledge base, perturbed as bench/bench_engine.py builds its 20,000-entry knowledge base:
typos, dropped and swapped words, greetings, masked numbers; half the resolutions the base answer, a
third one of three templated rewordings, the rest one-off answers. Registration times spread evenly over
two years; 0.1% of the rows carry an unreadable time (listed by the report, not dropped).

It then runs ``analyze`` as the ``analyze`` command would without ``--kb``: the knowledge base is the
export's resolved tickets before the cut-off (75% of the tickets), the rest are replayed. Measured: the
whole call (tickets/s over the replayed tickets, and over all tickets), the knowledge-base import inside
it, the replay loop, the peak RSS of the process (ru_maxrss) and the report's rendering.

    PYTHONPATH=. .venv/bin/python bench/bench_analyze.py --tickets 22000 --embedder use --out bench/results/analyze.json

``--embedder hashing`` runs the same pipeline with the deterministic HashingEmbedder: the cost of everything
but the sentence encoder (Chroma, lexical index, fusion, matching, clustering) and its memory.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import resource
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from bench_engine import RUTUBE_DIR, SAMPLE_KB, load_bases, perturb_question, templated_answer, unique_answer  # noqa: E402

HEADER = ("Код", "Категория", "Время регистрации", "Рабочая группа", "Краткое описание", "Описание", "Решение",
          "Аналитика 1", "Аналитика 2", "Аналитика 3")
KINDS = ("Инцидент", "Запрос на обслуживание", "Изменение")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def write_export(path: Path, n: int, seed: int) -> dict[str, Any]:
    """The synthetic export, written row by row (openpyxl write-only: bounded memory)."""
    import openpyxl

    bases, notes = load_bases(RUTUBE_DIR, SAMPLE_KB)
    rng = random.Random(seed)
    start = datetime(2023, 1, 9, 8, 0)
    span = timedelta(days=730).total_seconds()
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("Выгрузка")
    ws.append(["Выгрузка обращений (синтетическая, bench_analyze)"])
    ws.append(list(HEADER))
    bad = 0
    for i in range(n):
        base = bases[i % len(bases)]
        variant = i // len(bases)
        r = random.Random(f"{seed}:{i}")
        question = base.question if variant == 0 else perturb_question(base.question, r, 1.0 + min(variant, 40) / 40)
        pick = r.random()
        answer = base.answer if pick < 0.5 else templated_answer(base, r.randrange(3), seed) if pick < 0.85 else (
            unique_answer(base, r))
        at = start + timedelta(seconds=span * i / n + r.uniform(0, 3600))
        when: object = at
        if r.random() < 0.001:
            when, bad = "нет данных", bad + 1
        cats = list(base.categories) + [""] * (3 - len(base.categories))
        ws.append([f"INC{1000000 + i}", rng.choice(KINDS), when, "1-я линия поддержки",
                   base.title if r.random() < 0.8 else "", question, answer, *cats[:3]])
    wb.save(path)
    return {"tickets": n, "bases": len(bases), "unreadable_times": bad, "sources": notes,
            "bytes": path.stat().st_size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tickets", type=int, default=22_000)
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "analyze.json")
    ap.add_argument("--report", type=Path, default=None, help="also write the HTML report here")
    ap.add_argument("--embedder", choices=("use", "hashing"), default="use",
                    help="use: the bundled USE encoder; hashing: HashingEmbedder (all but the encoder's cost)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from plugin.reports.analysis import render_analysis
    from plugin.service import replay
    from rag.embeddings import HashingEmbedder, USEEmbedder

    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-analyze-") as tmp:
        export = Path(tmp) / "export.xlsx"
        t = time.perf_counter()
        built = write_export(export, args.tickets, args.seed)
        built["write_s"] = round(time.perf_counter() - t, 1)
        print(f"export written: {built}", flush=True)
        embedder = USEEmbedder() if args.embedder == "use" else HashingEmbedder()
        rss_before = rss_mb()
        timings: dict[str, float] = {}
        original_import = replay.Engine.import_entries

        def timed_import(self: Any, *a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original_import(self, *a, **kw)
            finally:
                timings["kb_import_s"] = time.perf_counter() - t0

        replay.Engine.import_entries = timed_import  # type: ignore[method-assign]
        t = time.perf_counter()
        result = replay.analyze(export, embedder=embedder, progress=True)
        total = time.perf_counter() - t
        replay.Engine.import_entries = original_import  # type: ignore[method-assign]
        t = time.perf_counter()
        html = render_analysis(result)
        render_s = time.perf_counter() - t
        if args.report:
            args.report.write_text(html, encoding="utf-8")
    replay_s = total - timings.get("kb_import_s", 0.0)
    out = {
        "benchmark": "analyze",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_start": load_start,
                    "load_end": os.getloadavg()},
        "export": built,
        "embedder": result.embedder,
        "cutoff": result.cutoff.isoformat() if result.cutoff else None,
        "kb_entries": result.kb_entries,
        "replayed": result.replayed,
        "unreadable_listed": len(result.unreadable),
        "total_s": round(total, 1),
        "kb_import_s": round(timings.get("kb_import_s", 0.0), 1),
        "replay_s": round(replay_s, 1),
        "replayed_per_s": round(result.replayed / replay_s, 2) if replay_s else None,
        "all_tickets_per_s": round(result.tickets / total, 2),
        "kb_entries_per_s": (
            round(result.kb_entries / timings["kb_import_s"], 1) if timings.get("kb_import_s") else None
        ),
        "rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "report_render_s": round(render_s, 2),
        "report_bytes": len(html.encode()),
        "answered_share": round(result.answered_share, 4),
        "match_rate": round(result.match_rate or 0.0, 4),
        "deflection": round(result.deflection, 4),
        "exact": result.exact,
        "gaps": len(result.gaps),
    }
    print(json.dumps(out, ensure_ascii=False, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
