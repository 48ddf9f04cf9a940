"""What the engine learns beyond the fusion: a category classifier and a reranker with calibrated output.

* :class:`CategoryModel` predicts the first-level category from the request itself: a logistic
  regression (scikit-learn) over the sentence embedding, hashed character n-grams and word stems
  (unigrams and bigrams), trained on the
  knowledge base's own labels (each entry's question under its category) plus the confirmed requests
  (under their answer's category). The engine mixes its probabilities with the vote of the retrieved
  answers' labels.
* :class:`Reranker` reorders the retrieved candidates: a logistic regression over features of each
  candidate (the four signals, their z-scores and ranks, the fused score and its lead, similarity to
  confirmed and rejected requests of that answer (in meaning, characters and word stems), category
  agreement, the answer's popularity, lengths),
  trained on confirmed pairs with each pair's own key held out. Its output is the probability that the
  candidate is the right answer, so it is also the confidence (a calibration learned from outcomes).
  With too few pairs the engine keeps the fused order and the logistic calibrator.

Both are plain arrays (JSON / ``.npz``, no pickles) and say what they were trained on and when.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer

from rag.lexical import tokenize

SIGNALS = ("bm25", "char", "dense_q", "dense_qa")

#: Below this many confirmed pairs (distinct requests) the reranker is not trained.
MIN_PAIRS = 40

RERANK_FEATURES: tuple[str, ...] = (
    "fused",
    "fused_lead",
    "fused_gap_top",
    "log_fused_rank",
    *(f"z_{s}" for s in SIGNALS),
    *(f"raw_{s}" for s in SIGNALS),
    *(f"log_rank_{s}" for s in SIGNALS),
    "n_signals",
    "learned_sim",
    "learned_char",
    "learned_word",
    "rejected_sim",
    "category_p",
    "category_top",
    "log_confirmed",
    "log_rejected",
    "log_entries",
    "log_query_chars",
    "log_entry_chars",
)


@dataclass
class Candidate:
    """One distinct answer retrieved for a request, with what the signals said about it."""

    answer_id: str
    fused: float
    #: Best entry of this answer (position in the snapshot).
    pos: int
    raw: dict[str, float] = field(default_factory=dict)
    z: dict[str, float] = field(default_factory=dict)
    rank: dict[str, int] = field(default_factory=dict)
    learned_sim: float = 0.0
    #: Closest confirmed request of this answer in character n-grams and in word stems (cosine).
    learned_char: float = 0.0
    learned_word: float = 0.0
    rejected_sim: float = 0.0


def candidate_features(
    candidates: Sequence[Candidate],
    *,
    depth: int,
    query_chars: int,
    entry_chars: Sequence[int],
    category_p: Sequence[float],
    category_top: Sequence[bool],
    confirmed: Sequence[int],
    rejected: Sequence[int],
    entries: Sequence[int],
) -> np.ndarray:
    """The feature matrix of ``candidates`` (sorted by fused score), one row each."""
    fused = [c.fused for c in candidates]
    top = fused[0] if fused else 0.0
    rows = []
    for i, c in enumerate(candidates):
        others = [s for j, s in enumerate(fused) if j != i]
        rows.append([
            c.fused,
            c.fused - (max(others) if others else 0.0),
            c.fused - top,
            math.log(i + 1),
            *(c.z.get(s, -3.0) for s in SIGNALS),
            *(c.raw.get(s, 0.0) for s in SIGNALS),
            *(math.log(c.rank.get(s, depth + 1)) for s in SIGNALS),
            float(len(c.raw)),
            c.learned_sim,
            c.learned_char,
            c.learned_word,
            c.rejected_sim,
            category_p[i],
            float(category_top[i]),
            math.log1p(confirmed[i]),
            math.log1p(rejected[i]),
            math.log(max(entries[i], 1)),
            math.log1p(query_chars),
            math.log1p(entry_chars[i]),
        ])
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(RERANK_FEATURES))


@dataclass(frozen=True)
class Reranker:
    """Standardized logistic regression over :data:`RERANK_FEATURES`."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    #: What it was trained on and when (shown by ``kb stats``).
    info: Mapping[str, Any] = field(default_factory=dict)
    #: Platt scaling (slope, intercept on the logit) of the first answer's exclusive probability into the
    #: confidence, fitted on held-out training requests (:func:`cross_fit`); identity by default.
    platt: tuple[float, float] = (1.0, 0.0)

    def probability(self, x: np.ndarray) -> np.ndarray:
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        logit = z @ np.asarray(self.coef) + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(logit, -30, 30)))

    def confidence(self, p: np.ndarray) -> np.ndarray:
        """Exclusive probabilities (:func:`exclusive`) → confidences (Platt-scaled; the order is kept)."""
        return platt_scale(p, self.platt)

    def to_json(self) -> str:
        return json.dumps({"features": list(RERANK_FEATURES), "mean": list(self.mean), "scale": list(self.scale),
                           "coef": list(self.coef), "intercept": self.intercept, "platt": list(self.platt),
                           "info": dict(self.info)}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Reranker | None:
        """The stored reranker, or None when it was trained on other features (an older version)."""
        d = json.loads(text)
        if tuple(d.get("features", ())) != RERANK_FEATURES:
            return None
        slope, intercept = d.get("platt", (1.0, 0.0))
        return cls(tuple(d["mean"]), tuple(d["scale"]), tuple(d["coef"]), float(d["intercept"]), dict(d["info"]),
                   (float(slope), float(intercept)))

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, *, info: Mapping[str, Any], c: float = 3.0) -> Reranker:
        """Logistic regression (L2) on the candidates of the training requests: right answer or not."""
        from sklearn.linear_model import LogisticRegression

        if len(set(y.tolist())) < 2:
            raise ValueError("the reranker needs both right and wrong candidates")
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale < 1e-9] = 1.0
        model = LogisticRegression(C=c, max_iter=2000).fit((x - mean) / scale, y)
        return cls(tuple(mean.tolist()), tuple(scale.tolist()), tuple(model.coef_[0].tolist()),
                   float(model.intercept_[0]), dict(info))

    def weights(self) -> dict[str, float]:
        """Feature → weight (on standardized features), largest first: what the reranker relies on."""
        pairs = sorted(zip(RERANK_FEATURES, self.coef, strict=True), key=lambda kv: -abs(kv[1]))
        return {k: round(v, 3) for k, v in pairs}


_CHAR = HashingVectorizer(analyzer="char_wb", ngram_range=(2, 4), n_features=2**16, alternate_sign=False,
                          norm="l2", lowercase=True)


def _stems_and_bigrams(text: str) -> list[str]:
    stems = tokenize(text)
    return stems + [f"{a} {b}" for a, b in pairwise(stems)]


_WORDS = HashingVectorizer(analyzer=_stems_and_bigrams, n_features=2**16, alternate_sign=False, norm="l2")


def _text_features(vectors: np.ndarray, texts: Sequence[str], char_weight: float, word_weight: float) -> sp.csr_matrix:
    blocks = [sp.csr_matrix(np.asarray(vectors, dtype=np.float64)),
              _CHAR.transform([t.replace("ё", "е") for t in texts]).tocsr() * char_weight]
    if word_weight:
        blocks.append(_WORDS.transform(texts).tocsr() * word_weight)
    return sp.hstack(blocks, format="csr")


@dataclass(frozen=True)
class CategoryModel:
    """Multinomial logistic regression over [embedding, hashed char 2–4-grams, hashed word stems and
    stem bigrams] → first-level category. (A model saved before the word features has ``word_weight`` 0.)"""

    classes: tuple[str, ...]
    #: Weights, shape (features, classes), kept sparse where the char n-grams are unused.
    weights: sp.csr_matrix
    bias: np.ndarray
    char_weight: float
    info: Mapping[str, Any] = field(default_factory=dict)
    word_weight: float = 0.0

    def probabilities(self, vector: np.ndarray, text: str) -> dict[str, float]:
        x = _text_features(vector.reshape(1, -1), [text], self.char_weight, self.word_weight)
        logits = np.asarray((x @ self.weights).todense()).ravel() + self.bias
        logits -= logits.max()
        p = np.exp(logits)
        p /= p.sum()
        return dict(zip(self.classes, p.tolist(), strict=True))

    @classmethod
    def fit(
        cls,
        vectors: np.ndarray,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        info: Mapping[str, Any],
        c: float = 30.0,
        char_weight: float = 1.0,
        word_weight: float = 1.0,
        sample_weight: Sequence[float] | None = None,
    ) -> CategoryModel | None:
        """None when there are fewer than two categories to tell apart. (C, the weights of the blocks and
        the weight of confirmed requests in the engine were chosen by 5-fold CV on RUTUBE dev: README.)"""
        from sklearn.linear_model import LogisticRegression

        classes = sorted(set(labels))
        if len(classes) < 2:
            return None
        x = _text_features(vectors, texts, char_weight, word_weight)
        model = LogisticRegression(C=c, max_iter=3000)
        model.fit(x, list(labels), sample_weight=None if sample_weight is None else np.asarray(sample_weight))
        coef = np.asarray(model.coef_)
        bias = np.asarray(model.intercept_, dtype=np.float64)
        if len(classes) == 2:  # sklearn keeps one row for two classes: logit of the second
            coef = np.vstack([-coef[0] / 2, coef[0] / 2])
            bias = np.array([-bias[0] / 2, bias[0] / 2])
        coef[np.abs(coef) < 1e-6] = 0.0
        return cls(tuple(str(k) for k in model.classes_), sp.csr_matrix(coef.T), bias, char_weight, dict(info),
                   word_weight)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        w = self.weights.tocsr()
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, classes=np.array(self.classes, dtype=str), data=w.data, indices=w.indices, indptr=w.indptr,
                 shape=np.array(w.shape), bias=self.bias, char_weight=np.array(self.char_weight),
                 word_weight=np.array(self.word_weight),
                 info=np.array(json.dumps(dict(self.info), ensure_ascii=False)))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> CategoryModel | None:
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as d:
            w = sp.csr_matrix((d["data"], d["indices"], d["indptr"]), shape=tuple(d["shape"].tolist()))
            word_weight = float(d["word_weight"]) if "word_weight" in d.files else 0.0
            return cls(tuple(d["classes"].tolist()), w, d["bias"], float(d["char_weight"]),
                       json.loads(str(d["info"])), word_weight)


_LEARNED_CHAR = HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), n_features=2**18, alternate_sign=False,
                                  norm="l2", lowercase=True)
_LEARNED_WORDS = HashingVectorizer(analyzer=tokenize, n_features=2**18, alternate_sign=False, norm="l2")


@dataclass(frozen=True)
class LearnedText:
    """The confirmed requests in their own words: character 3–5-grams and word stems (l2-normalized), so
    that a request written like an earlier confirmed one is recognised even where the sentence
    embedding misses it (typos, product names, the house jargon)."""

    #: Ids of the pairs (``l<n>``) and the entry each chose, row by row.
    ids: tuple[str, ...]
    entry_ids: tuple[str, ...]
    chars: sp.csr_matrix
    words: sp.csr_matrix

    @classmethod
    def build(cls, pairs: Sequence[tuple[str, str, str]]) -> LearnedText:
        """From (pair id, entry id, request text) of the confirmed pairs."""
        texts = [t for _, _, t in pairs]
        if not texts:
            empty = sp.csr_matrix((0, _LEARNED_CHAR.n_features))
            return cls((), (), empty, empty)
        return cls(tuple(i for i, _, _ in pairs), tuple(e for _, e, _ in pairs),
                   _LEARNED_CHAR.transform([t.replace("ё", "е") for t in texts]).tocsr(),
                   _LEARNED_WORDS.transform(texts).tocsr())

    def similar(self, text: str, exclude: frozenset[str] = frozenset()) -> dict[str, tuple[float, float]]:
        """Entry id → (best char cosine, best word cosine) over the confirmed requests that chose it and
        share anything with ``text``; pairs in ``exclude`` are left out."""
        if not self.ids:
            return {}
        c = (self.chars @ _LEARNED_CHAR.transform([text.replace("ё", "е")]).T).tocoo()
        w = (self.words @ _LEARNED_WORDS.transform([text]).T).tocoo()
        out: dict[str, list[float]] = {}
        for col, (rows, values) in enumerate(((c.row, c.data), (w.row, w.data))):
            for row, value in zip(rows.tolist(), values.tolist(), strict=True):
                if self.ids[row] in exclude:
                    continue
                best = out.setdefault(self.entry_ids[row], [0.0, 0.0])
                best[col] = max(best[col], float(value))
        return {k: (v[0], v[1]) for k, v in out.items()}


def exclusive(p: np.ndarray) -> np.ndarray:
    """The reranker's probabilities as probabilities of exclusive events: each is the chance that *this*
    candidate is the right answer, and at most one is, so where they sum to more than 1 they are scaled
    down to sum to 1. Two candidates that both look right then share the confidence instead of each
    claiming it (the confidence of the first answer, and the category vote). The share of the rest,
    ``1 - sum``, is the chance that none of them is right."""
    total = float(np.sum(p))
    return p / total if total > 1.0 else p


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(q / (1 - q))


def platt_scale(p: np.ndarray, platt: tuple[float, float]) -> np.ndarray:
    slope, intercept = platt
    if (slope, intercept) == (1.0, 0.0):
        return np.asarray(p, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-np.clip(slope * _logit(p) + intercept, -30, 30)))


def first_answers(prob: np.ndarray, y: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per request (group): the exclusive probability of its first candidate, and whether it is right."""
    conf: list[float] = []
    right: list[bool] = []
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        p = exclusive(prob[rows])
        best = int(np.argmax(p))
        conf.append(float(p[best]))
        right.append(bool(y[rows[best]]))
    return np.asarray(conf), np.asarray(right)


def cross_fit(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, *, info: Mapping[str, Any], folds: int = 5
) -> tuple[Reranker, np.ndarray, np.ndarray]:
    """The reranker fitted on every training request, with its confidence calibrated on requests it did
    not see: each of ``folds`` parts of the requests is scored by a reranker fitted on the others; a
    Platt scaling of those held-out first answers maps the exclusive probability to the confidence.
    Also the held-out first answers' confidences and rightness (what the default threshold is set
    from: on the training requests themselves the reranker would look better than it is)."""
    from sklearn.linear_model import LogisticRegression

    reranker = Reranker.fit(x, y, info=info)
    held_out = np.zeros(len(y))
    part = groups.astype(np.int64) % folds
    for k in range(folds):
        train = part != k
        if len(set(y[train].tolist())) < 2 or train.all():
            return reranker, *first_answers(reranker.probability(x), y, groups)
        held_out[~train] = Reranker.fit(x[train], y[train], info={}).probability(x[~train])
    conf, right = first_answers(held_out, y, groups)
    if len(set(right.tolist())) < 2:
        return reranker, conf, right
    lr = LogisticRegression(C=100.0).fit(_logit(conf).reshape(-1, 1), right.astype(int))
    platt = (float(lr.coef_[0][0]), float(lr.intercept_[0]))
    if platt[0] <= 0:  # a held-out confidence that does not rise with the probability says nothing
        return reranker, conf, right
    reranker = Reranker(reranker.mean, reranker.scale, reranker.coef, reranker.intercept, reranker.info, platt)
    return reranker, platt_scale(conf, platt), right


#: What the default threshold aims at: the right answer first in this share of the answered requests.
TARGET_PRECISION = 0.90


#: A default threshold is only set from a cut that answers at least this many of the requests it is fitted on
#: (one lucky request at the top says nothing about precision).
MIN_ANSWERED = 10


def threshold_at_precision(
    confidences: Sequence[float], right: Sequence[bool], target: float, *, min_answered: int = 1
) -> float | None:
    """The lowest threshold on the first answer's confidence at which at least ``target`` of the
    requests answered get the right answer first, answering at least ``min_answered`` of them; None
    when no threshold reaches it."""
    order = sorted(range(len(confidences)), key=lambda i: -confidences[i])
    hits = 0
    found: float | None = None
    for k, i in enumerate(order, start=1):
        hits += int(right[i])
        last = k == len(order) or confidences[order[k]] < confidences[i]
        if last and k >= min_answered and hits / k >= target:
            found = float(confidences[i])
    return found


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
