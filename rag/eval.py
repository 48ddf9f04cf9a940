"""Offline evaluation: hit@k, MRR@10, category accuracy, and coverage/precision at the threshold.

A case is a hit at k when its gold answer equals one of the first k distinct answers after case and
whitespace normalization. With learning cases, their confirmed pairs are recorded first and the
confidence calibrator is refitted on them, exactly as the service does with real outcomes; the cases
evaluated should then be different ones (``--folds`` does that by cross-validation).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tqdm import tqdm

from rag.calibration import Calibrator, lead
from rag.engine import Engine
from rag.text import normalize_for_match

log = logging.getLogger(__name__)


class Case(Protocol):
    query: str
    gold_answer: str
    categories: tuple[str, ...]


@dataclass
class CaseResult:
    query: str
    rank: int | None
    confidence: float
    answered: bool
    category_ok: bool | None


def _rank(hits_answers: Sequence[str], gold: str) -> int | None:
    for i, answer in enumerate(hits_answers, start=1):
        if normalize_for_match(answer) == gold:
            return i
    return None


def learn_from(engine: Engine, cases: Sequence[Case], *, progress: bool = False) -> tuple[int, int]:
    """Record each case whose gold answer is in the KB as a confirmed pair; returns (learned, unknown)."""
    learned = unknown = 0
    for case in tqdm(cases, desc="learning", unit="case", disable=not progress):
        entry_id = engine.entry_for_answer(case.gold_answer)
        if entry_id is None:
            unknown += 1
            continue
        engine.learn(case.query, entry_id, positive=True, origin="eval")
        learned += 1
    return learned, unknown


def fit_calibration(engine: Engine, cases: Sequence[Case], *, fitted_on: str, progress: bool = False) -> Calibrator:
    """Fit the confidence calibrator on labelled cases (top-5 results of each, correct or not)."""
    features: list[tuple[float, float, float]] = []
    labels: list[int] = []
    for case in tqdm(cases, desc="calibrating", unit="case", disable=not progress):
        gold = normalize_for_match(case.gold_answer)
        hits, _ = engine.search(case.query, top_k=5)
        scores = [hit.score for hit in hits]
        for i, hit in enumerate(hits):
            features.append((hit.score, lead(scores, i), hit.signals.get("dense_q", 0.0)))
            labels.append(int(normalize_for_match(hit.answer) == gold))
    calibrator = Calibrator.fit(features, labels, fitted_on=fitted_on)
    engine.set_calibrator(calibrator)
    return calibrator


def evaluate(
    engine: Engine, cases: Sequence[Case], *, threshold: float, progress: bool = False
) -> tuple[dict[str, Any], list[CaseResult]]:
    results: list[CaseResult] = []
    labelled = any(c.categories for c in cases)
    for case in tqdm(cases, desc="evaluating", unit="case", disable=not progress):
        hits, prediction = engine.search(case.query, top_k=10)
        rank = _rank([h.answer for h in hits], normalize_for_match(case.gold_answer))
        confidence = hits[0].confidence if hits else 0.0
        category_ok = None
        if labelled and case.categories:
            category_ok = prediction.levels[:1] == case.categories[:1]
        results.append(CaseResult(case.query, rank, confidence, confidence >= threshold, category_ok))
    return summarize(results, threshold), results


def summarize(results: Sequence[CaseResult], threshold: float) -> dict[str, Any]:
    n = len(results)
    if n == 0:
        raise ValueError("no cases to evaluate")

    def share(values: Sequence[bool]) -> float | None:
        return round(sum(values) / len(values), 4) if values else None

    answered = [r for r in results if r.answered]
    judged = [r.category_ok for r in results if r.category_ok is not None]
    return {
        "n": n,
        "hit@1": share([r.rank == 1 for r in results]),
        "hit@3": share([r.rank is not None and r.rank <= 3 for r in results]),
        "mrr@10": round(sum(1.0 / r.rank for r in results if r.rank is not None and r.rank <= 10) / n, 4),
        "category_accuracy": share(judged),
        "answered": {
            "threshold": threshold,
            "coverage": round(len(answered) / n, 4),
            "precision@1": share([r.rank == 1 for r in answered]),
            "precision@3": share([r.rank is not None and r.rank <= 3 for r in answered]),
        },
    }
