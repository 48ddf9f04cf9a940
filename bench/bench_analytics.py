"""Benchmark of the analytics report (plugin.service.analytics.build_report) on a year of events.

A measurement, not a test: it prints and records numbers and asserts nothing about them.

A year of synthetic traffic is written through the store's own API (``Suggestions.create``,
``record_outcome``, ``add_event``, inside one outer transaction): 100,000 suggestions over 365 days across
GLPI, Redmine, mail and chat and 12 categories; 30% abstained, 3% held out, the rest shown; of the shown,
45% confirmed (8% of those reopened within a week, 2% after an agent's reply), 20% rejected and handed off,
10% timed out; agent replies on a third. Then the report for the whole year is built (as ``report`` and the
page do), with and without the knowledge gaps (the bundled USE encoder over the latest
``analytics.gap_max_requests`` unanswered or rejected requests, or the hashing embedder with
``--embedder hashing``), and rendered as HTML, CSV and JSON. Measured: the seconds of each step, the peak RSS.

The replay's throughput and memory on 22,000 tickets (``analyze``) are measured by bench/bench_analyze.py
(bench/results/analyze*.json).

    PYTHONPATH=. .venv/bin/python bench/bench_analytics.py --suggestions 100000 --out bench/results/analytics.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from plugin.reports.analytics import render_document, report_csv, report_json  # noqa: E402
from plugin.service.analytics import build_report  # noqa: E402
from plugin.settings import AnalyticsSettings  # noqa: E402
from plugin.store import Store  # noqa: E402
from plugin.store.suggestions import EntryRef, Suggestion  # noqa: E402

SOURCES = ("glpi", "redmine", "email", "chat")
CATEGORIES = ("Почта", "VPN", "Пароли", "1С", "Печать", "Телефония", "Доступы", "Оборудование", "Wi-Fi",
              "Удалённый доступ", "ПО", "Прочее")
START = datetime(2025, 1, 1, tzinfo=UTC)
WORDS = ("не работает", "не могу", "ошибка", "почта", "принтер", "пароль", "доступ", "VPN", "1С", "звонок",
         "сеть", "монитор", "установить", "настроить", "срочно", "сервер", "папка", "телефон")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Clock:
    def __init__(self) -> None:
        self.now = START.timestamp()

    def __call__(self) -> float:
        return self.now


def write_year(store: Store, clock: Clock, n: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    counts = {"shown": 0, "abstained": 0, "holdout": 0, "confirmed": 0, "rejected": 0}
    span = 365 * 86_400
    with store.db.transaction():
        for i in range(n):
            created = START.timestamp() + span * i / n + rng.uniform(0, 60)
            category = rng.choice(CATEGORIES)
            r = rng.random()
            mode = "abstain" if r < 0.30 else ("holdout" if r < 0.33 else "public")
            answer = f"a{rng.randrange(400)}"
            text = " ".join(rng.sample(WORDS, 4)) + f" {category}"
            store.suggestions.create(Suggestion(
                id=f"s{i:06d}", source=rng.choice(SOURCES), ticket_id=str(i), created_at=created,
                mode=mode, language="ru", query=text, category=f"{category} > sub{rng.randrange(5)}",  # type: ignore[arg-type]
                confidence=rng.uniform(0.2, 0.5) if mode == "abstain" else rng.uniform(0.5, 1.0), threshold=0.5,
                entries=[EntryRef(entry_id=answer, answer_id=answer, title=f"entry {answer}")],
            ))
            counts["abstained" if mode == "abstain" else "holdout" if mode == "holdout" else "shown"] += 1
            sid = f"s{i:06d}"
            if rng.random() < 0.33:
                store.suggestions.add_event(sid, "agent_replied", channel="helpdesk", ref="c1",
                                            at=created + rng.uniform(600, 86_400))
            if mode == "holdout":
                store.suggestions.add_event(sid, "closed_by_agent", channel="helpdesk",
                                            at=created + rng.uniform(3600, 4 * 86_400))
                continue
            if mode != "public":
                continue
            r = rng.random()
            clock.now = created + rng.uniform(300, 86_400)
            if r < 0.45:
                reason = "agent_involved" if rng.random() < 0.02 else None
                store.suggestions.record_outcome(sid, "solved", via="link", reason=reason)
                counts["confirmed"] += 1
                if rng.random() < 0.08:
                    store.suggestions.add_event(sid, "reopened", channel="helpdesk", ref="r",
                                                at=clock.now + rng.uniform(3600, 6 * 86_400))
            elif r < 0.65:
                store.suggestions.record_outcome(sid, "not_solved", via="link", reason="not_related")
                store.suggestions.add_event(sid, "handed_off", channel="helpdesk", at=clock.now)
                counts["rejected"] += 1
            elif r < 0.75:
                store.suggestions.add_event(sid, "timed_out", channel="worker", at=created + 3 * 86_400)
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suggestions", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--embedder", choices=("use", "hashing"), default="use")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-analytics-") as tmp:
        clock = Clock()
        store = Store.open(Path(tmp) / "state.sqlite3", clock=clock)
        t0 = time.perf_counter()
        counts = write_year(store, clock, args.suggestions, args.seed)
        write_s = time.perf_counter() - t0
        size_mb = (Path(tmp) / "state.sqlite3").stat().st_size / 2**20
        settings = AnalyticsSettings()
        since, until = START, START + timedelta(days=365)
        now = until + timedelta(days=30)
        t0 = time.perf_counter()
        report = build_report(store.analytics, settings, since=since, until=until, now=now)
        report_s = time.perf_counter() - t0
        rss_after_report = peak_rss_mb()
        if args.embedder == "use":
            from rag.embeddings import USEEmbedder

            embedder = USEEmbedder()
        else:
            from rag.embeddings import HashingEmbedder

            embedder = HashingEmbedder()  # type: ignore[assignment]
        embedder.embed(["прогрев"])
        t0 = time.perf_counter()
        with_gaps = build_report(store.analytics, settings, since=since, until=until, now=now, embed=embedder.embed)
        gaps_s = time.perf_counter() - t0
        timings = {}
        for name, fn in (("html", lambda: render_document(with_gaps, language="ru")),
                         ("csv", lambda: report_csv(with_gaps)), ("json", lambda: report_json(with_gaps))):
            t0 = time.perf_counter()
            text = fn()
            timings[name] = {"s": round(time.perf_counter() - t0, 3), "bytes": len(text.encode())}
        store.close()
    t = report.total
    result = {
        "benchmark": "analytics",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_start": load_start,
                    "load_end": os.getloadavg()},
        "suggestions": args.suggestions,
        "written": counts,
        "write_s": round(write_s, 1),
        "state_file_mb": round(size_mb, 1),
        "report_s": round(report_s, 2),
        "peak_rss_after_report_mb": round(rss_after_report, 1),
        "embedder": embedder.name,
        "report_with_gaps_s": round(gaps_s, 2),
        "gaps": len(with_gaps.gaps),
        "render": timings,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "totals": {"seen": t.seen, "answered": t.answered, "confirmed": t.confirmed, "deflected": t.deflected,
                   "reopened": t.reopened, "rejected": t.rejected, "deflection_rate": round(t.deflection_rate or 0, 4)},
    }
    print(json.dumps(result, ensure_ascii=False, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
