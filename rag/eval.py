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
from rag.learning import MIN_ANSWERED, TARGET_PRECISION, threshold_at_precision
from rag.models import AnswerHit
from rag.privacy import mask_pii
from rag.text import clean_query, normalize_for_match

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


def own_pairs(engine: Engine) -> dict[str, frozenset[str]]:
    """Cleaned request → ids (``l<n>``) of the learned pairs recorded for it: what to leave out when a
    learned request is measured, so that it does not find itself."""
    out: dict[str, set[str]] = {}
    for p in engine.store.learned():
        out.setdefault(clean_query(p.query), set()).add(f"l{p.id}")
    return {k: frozenset(v) for k, v in out.items()}


def calibration_rows(hits: Sequence[AnswerHit], gold: str | None) -> list[tuple[tuple[float, float, float], int]]:
    """What the calibrator learns from one request's results: (fused score, lead, dense similarity) and
    whether it is the gold answer (normalized; ``gold`` None: a request none of them answers)."""
    scores = [hit.score for hit in hits]
    return [((hit.score, lead(scores, i), hit.signals.get("dense_q", 0.0)),
             int(gold is not None and normalize_for_match(hit.answer) == gold)) for i, hit in enumerate(hits)]


def fit_calibration(engine: Engine, cases: Sequence[Case], *, fitted_on: str, progress: bool = False) -> Calibrator:
    """Fit the confidence calibrator on labelled cases (top-5 results of each, correct or not); a case
    that was learned is measured without its own pair."""
    features: list[tuple[float, float, float]] = []
    labels: list[int] = []
    starts: list[bool] = []
    own = own_pairs(engine)
    for case in tqdm(cases, desc="calibrating", unit="case", disable=not progress):
        gold = normalize_for_match(case.gold_answer)
        hits, _ = engine.search(
            case.query, top_k=5, exclude_learned=own.get(clean_query(mask_pii(case.query)), frozenset())
        )
        for i, (f, y) in enumerate(calibration_rows(hits, gold)):
            features.append(f)
            labels.append(y)
            starts.append(i == 0)
    calibrator = Calibrator.fit(features, labels, fitted_on=fitted_on)
    engine.set_calibrator(calibrator)
    # The first result of each case: what the default threshold (precision@1 about 0.90) is set from.
    firsts = [
        (calibrator.confidence(*f), bool(y)) for f, y, first in zip(features, labels, starts, strict=True) if first
    ]
    t = threshold_at_precision([c for c, _ in firsts], [ok for _, ok in firsts], TARGET_PRECISION,
                               min_answered=MIN_ANSWERED)
    engine.set_default_threshold(t if t is not None else 0.95, fitted_on)
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


# -- precision first, reliability, cross-validation ---------------------------------------------------
def coverage_at_precision(results: Sequence[CaseResult], target: float) -> dict[str, Any]:
    """The largest share of requests that could be answered (the most confident first) while the right
    answer stays first in at least ``target`` of them, and the confidence threshold that does it."""
    ordered = sorted(results, key=lambda r: -r.confidence)
    best_k, right = 0, 0
    for k, r in enumerate(ordered, start=1):
        right += int(r.rank == 1)
        # Only cut between different confidences: a threshold cannot split equal ones.
        if right / k >= target and (k == len(ordered) or ordered[k].confidence < r.confidence):
            best_k = k
    if best_k == 0:
        return {"target": target, "coverage": 0.0, "precision@1": None, "threshold": None}
    chosen = ordered[:best_k]
    return {
        "target": target,
        "coverage": round(best_k / len(results), 4),
        "precision@1": round(sum(r.rank == 1 for r in chosen) / best_k, 4),
        "threshold": round(chosen[-1].confidence, 4),
    }


def threshold_for_precision(results: Sequence[CaseResult], target: float) -> float | None:
    """The lowest confidence threshold at which the right answer comes first in ``target`` of the
    answered requests (None when no threshold reaches it)."""
    found = coverage_at_precision(results, target)["threshold"]
    return None if found is None else float(found)


def reliability(results: Sequence[CaseResult], bins: int = 10) -> dict[str, Any]:
    """Predicted confidence of the first answer against how often it was right, per confidence bin,
    and the expected calibration error (weighted mean gap)."""
    rows = []
    gap = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = [r for r in results if lo <= r.confidence < hi or (b == bins - 1 and r.confidence == 1.0)]
        if not inside:
            continue
        predicted = sum(r.confidence for r in inside) / len(inside)
        observed = sum(r.rank == 1 for r in inside) / len(inside)
        gap += len(inside) * abs(predicted - observed)
        rows.append({"bin": f"{lo:.1f}-{hi:.1f}", "n": len(inside), "predicted": round(predicted, 3),
                     "observed": round(observed, 3)})
    return {"bins": rows, "ece": round(gap / len(results), 4) if results else None, "auc": confidence_auc(results)}


def confidence_auc(results: Sequence[CaseResult]) -> float | None:
    """How well the confidence orders the requests, over every threshold at once: the chance that a request
    whose first answer is right gets a higher confidence than one whose first answer is wrong (ties count
    half; the area under the ROC curve). None without both kinds. The coverage at one target precision moves
    with a few requests near its cut; this does not."""
    right = [r.confidence for r in results if r.rank == 1]
    wrong = [r.confidence for r in results if r.rank != 1]
    if not right or not wrong:
        return None
    from scipy.stats import mannwhitneyu

    u = mannwhitneyu(right, wrong).statistic
    return round(float(u) / (len(right) * len(wrong)), 4)


#: The seed of the shuffle that splits the cases into folds, unless another is asked for (`eval --fold-seed`).
FOLD_SEED = 13


def folds_of(n: int, k: int, seed: int = FOLD_SEED) -> list[list[int]]:
    """``k`` disjoint folds of ``range(n)`` (a seeded shuffle, then round robin)."""
    import random

    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [sorted(order[i::k]) for i in range(k)]


def prepare_from_pairs(
    engine: Engine, learning: Sequence[Case], *, fitted_on: str, progress: bool = False
) -> dict[str, Any]:
    """What the service does with confirmed outcomes: record them as pairs, retrain the category model
    and the reranker; without enough pairs for a reranker, refit the calibrator instead."""
    learned, unknown = learn_from(engine, learning, progress=progress)
    trained = engine.refit()
    if trained["reranker"] is None:
        try:
            fit_calibration(engine, learning, fitted_on=fitted_on, progress=progress)
        except ValueError:
            log.warning("calibration: the learning cases have no right (or no wrong) results; kept as it was")
    return {"learned": learned, "unknown": unknown, **trained}


def cross_validate(
    engine: Engine,
    cases: Sequence[Case],
    *,
    folds: int,
    threshold: float | None,
    targets: Sequence[float] = (0.85, 0.90),
    seed: int = FOLD_SEED,
    progress: bool = False,
) -> tuple[dict[str, Any], list[CaseResult]]:
    """k-fold cross-validation of everything learned from the cases: for each fold, forget what was
    learned, learn the other folds' cases as confirmed pairs (category model, reranker, calibration),
    and measure this fold. The metrics are over the pooled held-out results. With ``threshold`` None,
    each fold's threshold is the one that reached the first target precision on the other folds'
    held-out results (so the choice of threshold is held out too)."""
    if folds < 2 or folds > len(cases):
        raise ValueError(f"--folds must be between 2 and the number of cases ({len(cases)}), got {folds}")
    parts = folds_of(len(cases), folds, seed)
    per_fold: list[list[CaseResult]] = []
    trained: list[dict[str, Any]] = []
    chosen: list[float] = []
    for i, test_idx in enumerate(parts):
        engine.forget_learned()
        engine.store.set_meta("calibration", "")
        engine.store.set_meta("default_threshold", "")
        train = [cases[j] for k, part in enumerate(parts) if k != i for j in part]
        trained.append(prepare_from_pairs(engine, train, fitted_on=f"fold {i + 1}", progress=False))
        # Without a threshold: the engine's own default, fitted on the training folds (as in service).
        bar = engine.default_threshold() if threshold is None else threshold
        chosen.append(bar)
        _, results = evaluate(engine, [cases[j] for j in test_idx], threshold=bar, progress=progress)
        per_fold.append(results)
    pooled = [r for fold in per_fold for r in fold]
    metrics = summarize(pooled, threshold if threshold is not None else -1.0)
    if threshold is None:
        held_out = ", ".join(f"{t:.3f}" for t in chosen)
        metrics["answered"]["threshold"] = f"the engine's default, per fold: {held_out}"
        metrics["answered"]["per_fold_thresholds"] = [round(t, 4) for t in chosen]
    metrics["folds"] = folds
    metrics["fold_seed"] = seed
    metrics["per_fold"] = [
        {k: v for k, v in summarize(r, threshold or 0.5).items() if k in ("n", "hit@1", "hit@3", "category_accuracy")}
        for r in per_fold
    ]
    metrics["at_precision"] = [coverage_at_precision(pooled, t) for t in targets]
    metrics["reliability"] = reliability(pooled)
    metrics["trained"] = trained
    return metrics, pooled
