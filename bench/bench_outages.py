"""Precision and recall of outage detection (rag.clusters.BurstDetector) on synthetic outages in real traffic.

A measurement, not a test: it prints and records numbers and asserts nothing.

Traffic: real user requests as background — the 401 RUTUBE questions (``cases_dev.xlsx``) and the 188
questions of the sample knowledge base — arriving at a steady Poisson rate (20 and 60 an hour: a
22,000-ticket-a-year helpdesk sees about 11 an hour in working hours), and the ten hand-written outages of
``tests/fixtures/outages/bursts.yaml`` (10–12 different users' wordings each, with greetings, sign-offs
and typos added at random) arriving within 15 minutes each, spread over the day. Channels are random.

Scores (``tests/rag/outage_stream.score``): a request is flagged when it ends up in an incident; request
precision = flagged outage requests / flagged, request recall = flagged outage requests / outage
requests; an incident is true when most of its members are one outage's; an outage is found when it has a
true incident.

The thresholds are chosen by 2-fold cross-validation, never on the requests they are scored on: the
outages and the background are each split in two halves; the (similarity, join similarity) pair with the
best request F1 on one half (averaged over 3 stream seeds) is scored on the other half. ``min_requests``
(5) and ``window_s`` (600) are the admin's settings ("five in ten minutes") and are not tuned.

    PYTHONPATH=. .venv/bin/python bench/bench_outages.py --out bench/results/outages.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dataset import SAMPLE_KB  # noqa: E402
from dataset.importers import read_cases, read_kb  # noqa: E402
from rag.clusters import BurstConfig, BurstDetector, CharMix  # noqa: E402
from rag.embeddings import USEEmbedder  # noqa: E402
from rag.text import clean_query  # noqa: E402
from tests.rag.outage_stream import build_stream, scenarios, score  # noqa: E402

RUTUBE = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "rutube"
SIMILARITIES = (0.3, 0.35, 0.4, 0.45, 0.5)
JOINS = (0.6, 0.65, 0.7, 0.75)
RATES = (20.0, 60.0)
SEEDS = (1, 2, 3)


def _f1(p: float | None, r: float) -> float:
    p = p or 0.0
    return 2 * p * r / (p + r) if p + r else 0.0


def run(embed: Callable[[Sequence[str]], np.ndarray], background: list[str], bursts: dict[str, list[str]],
        rate: float, sim: float, join: float, k: int, window: float) -> dict[str, Any]:
    rows = []
    for seed in SEEDS:
        stream = build_stream(background, bursts, background_per_hour=rate, burst_span_s=900, seed=seed)
        config = BurstConfig(min_requests=k, window_s=window, similarity=sim, join_similarity=join)
        detector = BurstDetector(embed, config)
        rows.append(score(detector.add_many(stream.requests), stream.truth))
    p = [s.request_precision for s in rows if s.request_precision is not None]
    out = {
        "request_precision": round(float(np.mean(p)), 3) if p else None,
        "request_recall": round(float(np.mean([s.request_recall for s in rows])), 3),
        "incident_precision": round(float(np.mean([s.incident_precision or 0 for s in rows])), 3),
        "bursts_found": round(float(np.mean([s.burst_recall for s in rows])), 3),
        "incidents": round(float(np.mean([s.incidents for s in rows])), 1),
        "false_incidents": round(float(np.mean([s.incidents - s.true_incidents for s in rows])), 2),
    }
    out["f1"] = round(_f1(out["request_precision"], out["request_recall"]), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "outages.json")
    ap.add_argument("--min-requests", type=int, default=5)
    ap.add_argument("--window-s", type=float, default=600.0)
    args = ap.parse_args()
    logging.disable(logging.WARNING)  # the detector logs every incident it opens

    kb = read_kb(SAMPLE_KB).entries
    cases, _ = read_cases(RUTUBE / "cases_dev.xlsx") if RUTUBE.exists() else ([], [])
    background = [c.query for c in cases] + [e.question for e in kb]
    corpus = [e.question for e in kb]
    if (RUTUBE / "knowledge_base.xlsx").exists():
        corpus += [e.question for e in read_kb(RUTUBE / "knowledge_base.xlsx").entries]
    all_bursts = scenarios()
    names = sorted(all_bursts)
    halves = [{n: all_bursts[n] for n in names[0::2]}, {n: all_bursts[n] for n in names[1::2]}]
    bg_halves = [background[0::2], background[1::2]]

    use = USEEmbedder()
    cache: dict[str, np.ndarray] = {}

    def use_embed(texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in cache]
        if missing:
            for t, v in zip(missing, use.embed([clean_query(x) for x in missing]), strict=True):
                cache[t] = v
        return np.stack([cache[t] for t in texts])

    featurizers: dict[str, Callable[[Sequence[str]], np.ndarray]] = {
        "use": use_embed,
        "use+char": CharMix(use_embed, corpus, weight=0.5),
    }
    started = time.time()
    results: dict[str, Any] = {
        "benchmark": "outages",
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "background": {"requests": len(background), "sources": "RUTUBE cases_dev questions + sample KB questions"},
        "outages": {n: len(v) for n, v in all_bursts.items()},
        "min_requests": args.min_requests,
        "window_s": args.window_s,
        "runs": {},
    }
    k, window = args.min_requests, args.window_s
    for feat_name, feat in featurizers.items():
        for rate in RATES:
            folds = []
            for tune, test in ((0, 1), (1, 0)):
                grid = {
                    (sim, join): run(feat, bg_halves[tune], halves[tune], rate, sim, join, k, window)
                    for sim, join in itertools.product(SIMILARITIES, JOINS)
                }
                (sim, join), tuned = max(grid.items(), key=lambda kv: (kv[1]["f1"], kv[0][0]))
                held = run(feat, bg_halves[test], halves[test], rate, sim, join, k, window)
                folds.append({"similarity": sim, "join_similarity": join, "tuned_on": tuned, "held_out": held})
                print(f"{feat_name:9s} {rate:4.0f}/h fold {tune}->{test}: sim {sim} join {join}  held-out: "
                      f"req P {held['request_precision']} R {held['request_recall']}  incidents P "
                      f"{held['incident_precision']}  outages found {held['bursts_found']}  "
                      f"false incidents {held['false_incidents']}", flush=True)
            results["runs"][f"{feat_name}@{rate:g}/h"] = folds
    # The shipped defaults on everything (in-sample: for reference, not the headline).
    default = BurstConfig()
    results["defaults_in_sample"] = {
        f"use+char@{rate:g}/h": run(featurizers["use+char"], background, all_bursts, rate, default.similarity,
                                     default.join_similarity, default.min_requests, default.window_s)
        for rate in RATES
    }
    print("defaults, all outages and background (in-sample):", json.dumps(results["defaults_in_sample"]))
    results["elapsed_s"] = round(time.time() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
