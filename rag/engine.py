"""The answer engine: index the knowledge base, retrieve distinct answers, classify, decide, compose.

Retrieval fuses four signals, each over its own best candidates:

* BM25 over title + question (Snowball stems, Russian and English),
* character n-gram TF-IDF over title + question (typos and word forms),
* dense similarity to the entry's question, and to its question + answer (Chroma),

each z-normalized over its candidate list and weighted; entries that share one answer are merged
(max per signal). Confirmed requests (learned pairs) raise their answer for similar requests, rejected
ones lower it. A logistic calibrator turns the result into a probability; below the threshold (per
category, configurable) the engine abstains.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from rag.calibration import DEFAULT as DEFAULT_CALIBRATOR
from rag.calibration import Calibrator, lead
from rag.embeddings import Embedder, LoadedEmbedder
from rag.errors import EmptyIndexError, RagError
from rag.kbstore import KBStore, UpsertReport
from rag.lexical import LexicalIndex
from rag.models import (
    AnswerHit,
    CategoryPrediction,
    ComposedAnswer,
    Decision,
    EngineResult,
    KBEntry,
    answer_key,
    reason_words,
    stable_id,
)
from rag.policy import DecisionPolicy
from rag.store import VectorStore, VectorStoreConfig
from rag.text import clean_query, detect_language

log = logging.getLogger(__name__)

SIGNALS = ("bm25", "char", "dense_q", "dense_qa")


@dataclass(frozen=True)
class FusionWeights:
    """Chosen on the RUTUBE dev cases with a 2-fold check (see README, "Answer quality")."""

    bm25: float = 1.0
    char: float = 0.5
    dense_q: float = 1.5
    dense_qa: float = 0.5
    #: Added (scaled by similarity) to an answer that a similar confirmed request chose.
    learned: float = 1.5
    #: Subtracted (scaled by similarity) from an answer that a similar request rejected.
    rejected: float = 1.5

    def of(self, signal: str) -> float:
        return float(getattr(self, signal))


@dataclass
class EngineConfig:
    data_dir: Path
    vector_store: VectorStoreConfig | None = None
    candidates: int = 50
    top_k: int = 5
    weights: FusionWeights = field(default_factory=FusionWeights)
    #: The decision when a request brings no policy of its own (the application always passes one).
    policy: DecisionPolicy = field(default_factory=DecisionPolicy)
    default_language: str = "ru"
    #: Similarity of a learned request from which it starts to count, and the span to full weight.
    learned_floor: float = 0.5
    learned_span: float = 0.2

    def store_config(self) -> VectorStoreConfig:
        return self.vector_store or VectorStoreConfig(path=self.data_dir / "chroma")


@dataclass
class _Snapshot:
    """What a query needs in memory, consistent with one index version."""

    version: str
    entries: list[KBEntry]
    by_id: dict[str, int]
    answer_of: list[str]
    #: Position of the first entry carrying each answer.
    first_entry_of: dict[str, int]
    lexical: LexicalIndex | None
    #: Category levels of each answer (of its first labelled entry).
    categories_of: dict[str, tuple[str, ...]]
    #: Positions of the entries of each first-level category (for category filters).
    positions_of_category: dict[str, frozenset[int]]
    calibrator: Calibrator


class Engine:
    def __init__(
        self,
        config: EngineConfig,
        embedder: Embedder | LoadedEmbedder,
        *,
        llm: Any = None,
        llm_options: Mapping[str, Any] | None = None,
        words: Callable[[str], Callable[[str], str]] | None = None,
    ):
        """``words(language)`` translates the frame of composed answers (the application's catalog;
        without it the English keys are shown)."""
        loaded = embedder if isinstance(embedder, LoadedEmbedder) else LoadedEmbedder(embedder, embedder.name)
        self.config = config
        self.embedding = loaded
        self.embedder = loaded.embedder
        self.llm = llm
        self.llm_options = dict(llm_options or {})
        self.words = words
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = KBStore(config.data_dir / "kb.sqlite")
        self.vectors = VectorStore(config.store_config())
        self._lexical_dir = config.data_dir / "lexical"
        self._lock = threading.RLock()
        self._snapshot: _Snapshot | None = None

    # -- indexing ------------------------------------------------------------------------------------
    def import_entries(
        self, entries: Iterable[KBEntry], *, prune_source: str | None = None, progress: bool = False
    ) -> UpsertReport:
        report = self.store.upsert(entries, prune_source=prune_source)
        self.sync(progress=progress)
        return report

    def sync(self, *, progress: bool = False) -> int:
        """Bring the derived indexes up to date with the entries; returns how many were embedded."""
        with self._lock:
            self.vectors.ensure_model(self.embedder.name, self.embedder.dim)
            entries = self.store.entries()
            stale = self.store.stale_entries()
            current = {e.id for e in entries}
            gone = sorted(self.vectors.ids("q") - current)
            for kind in ("q", "qa"):
                self.vectors.delete(kind, gone)
            bar = tqdm(total=len(stale), desc="embedding", unit="entry", disable=not progress or not stale)
            step = 256
            for start in range(0, len(stale), step):
                batch = stale[start : start + step]
                meta = [_entry_meta(e) for e in batch]
                ids = [e.id for e in batch]
                self.vectors.upsert("q", ids, self.embedder.embed([e.question for e in batch]), meta)
                self.vectors.upsert("qa", ids, self.embedder.embed([_qa_text(e) for e in batch]), meta)
                self.store.mark_indexed(batch)
                bar.update(len(batch))
            bar.close()
            self._index_learned()
            if stale or gone or not (self._lexical_dir / "meta.json").exists():
                if entries:
                    LexicalIndex.build([_q_text(e) for e in entries]).save(self._lexical_dir)
                else:  # bm25s cannot index an empty corpus: an empty KB has no lexical index
                    shutil.rmtree(self._lexical_dir, ignore_errors=True)
                self.store.set_meta("index_version", stable_id(str(time.time_ns()), str(len(entries))))
            self.store.set_meta("embedding_model", self.embedder.name)
            self._snapshot = None
            return len(stale)

    def reindex(self, *, progress: bool = False) -> int:
        """Drop every derived index and rebuild it with the configured embedding model."""
        with self._lock:
            self.vectors.reset()
            self.store.clear_indexed()
            return self.sync(progress=progress)

    def _index_learned(self) -> None:
        pairs = self.store.learned(unindexed_only=True)
        if not pairs:
            return
        vectors = self.embedder.embed([clean_query(p.query) for p in pairs])
        self.vectors.upsert(
            "learned",
            [f"l{p.id}" for p in pairs],
            vectors,
            [{"answer_id": p.answer_id, "entry_id": p.entry_id, "polarity": p.polarity} for p in pairs],
        )
        self.store.mark_learned_indexed(p.id for p in pairs)

    def _current(self) -> _Snapshot:
        version = self.store.get_meta("index_version") or ""
        snap = self._snapshot
        if snap is not None and snap.version == version:
            return snap
        with self._lock:
            self.vectors.refresh()  # the collections may have been rebuilt by another process
            built_with = self.store.get_meta("embedding_model")
            if built_with:
                self.vectors.ensure_model(self.embedder.name, self.embedder.dim)
            entries = self.store.entries()
            lexical = LexicalIndex.load(self._lexical_dir) if entries and version else None
            if lexical is not None and lexical.n_docs != len(entries):
                raise RagError("the lexical index is out of date; run `helpdesk-assist kb reindex`")
            answer_of = [e.answer_id for e in entries]
            snap = _Snapshot(
                version=version,
                entries=entries,
                by_id={e.id: i for i, e in enumerate(entries)},
                answer_of=answer_of,
                first_entry_of={aid: pos for pos, aid in reversed(list(enumerate(answer_of)))},
                lexical=lexical,
                categories_of=_categories_of(entries, answer_of),
                positions_of_category=_positions_of_category(entries),
                calibrator=self.calibrator,
            )
            self._snapshot = snap
            return snap

    # -- learning ------------------------------------------------------------------------------------
    def entry_for_answer(self, answer: str) -> str | None:
        """The first entry whose answer equals ``answer`` after case and whitespace normalization."""
        snap = self._current()
        pos = snap.first_entry_of.get(answer_key(answer))
        return None if pos is None else snap.entries[pos].id

    def learn(self, query: str, entry_id: str, *, positive: bool, origin: str = "") -> bool:
        """Record that ``entry_id``'s answer solved (or did not solve) ``query``; persistent."""
        snap = self._current()
        if entry_id not in snap.by_id:
            raise RagError(f"unknown knowledge-base entry {entry_id!r}")
        answer_id = snap.answer_of[snap.by_id[entry_id]]
        from rag.privacy import mask_pii

        added = self.store.add_learned(mask_pii(query), answer_id, entry_id, 1 if positive else -1, origin=origin)
        if added:
            with self._lock:
                self._index_learned()
        return added

    def forget_learned(self, pair_id: int) -> bool:
        """Delete one learned pair (a wrong one an admin found) from the store and the vectors."""
        with self._lock:
            if not self.store.delete_learned(pair_id):
                return False
            self.vectors.delete("learned", [f"l{pair_id}"])
            return True

    # -- retrieval -----------------------------------------------------------------------------------
    def search(
        self, query: str, *, top_k: int | None = None, category: str | None = None
    ) -> tuple[list[AnswerHit], CategoryPrediction]:
        """The best distinct answers with calibrated confidences, and the predicted category."""
        hits, ranked = self._retrieve(query, top_k=top_k or self.config.top_k, category=category)
        return hits, self._classify(ranked, self._current())

    def _retrieve(
        self, query: str, *, top_k: int, category: str | None, keep: int = 10
    ) -> tuple[list[AnswerHit], list[tuple[str, float]]]:
        """Best ``top_k`` distinct answers, and the best ``keep`` (answer id, fused score) pairs."""
        snap = self._current()
        if not snap.entries or snap.lexical is None:
            raise EmptyIndexError("the knowledge base is empty: import one with `helpdesk-assist kb import FILE`")
        text = clean_query(query)
        n = self.config.candidates
        allowed: frozenset[int] | None = None
        where = None
        if category:
            allowed = snap.positions_of_category.get(category, frozenset())
            where = {"cat1": category}
        vector = self.embedder.embed([text])[0]
        widen = 4 if allowed is not None else 1
        raw: dict[str, list[tuple[int, float]]] = {
            "bm25": snap.lexical.bm25_top(text, n * widen),
            "char": snap.lexical.char_top(text, n * widen),
        }
        for kind in ("q", "qa"):
            found = self.vectors.query(kind, vector, n, where=where)
            raw[f"dense_{kind}"] = [(snap.by_id[h.id], h.similarity) for h in found if h.id in snap.by_id]
        if allowed is not None:
            raw = {k: [(i, s) for i, s in v if i in allowed] for k, v in raw.items()}

        # Pass 1: per signal, the best entry of each answer among the signal's candidates.
        per_signal: dict[str, dict[str, tuple[float, int]]] = {}
        for name, found_list in raw.items():
            per_answer: dict[str, tuple[float, int]] = {}
            for pos, score in found_list[:n]:
                aid = snap.answer_of[pos]
                if aid not in per_answer or score > per_answer[aid][0]:
                    per_answer[aid] = (score, pos)
            if per_answer:
                per_signal[name] = per_answer
        # Pass 2: z-normalize each signal over its candidates; an answer it missed gets its floor.
        fused: dict[str, float] = {}
        signals: dict[str, dict[str, float]] = {}
        best_entry: dict[str, tuple[float, int]] = {}
        answers = {aid for per_answer in per_signal.values() for aid in per_answer}
        for name, per_answer in per_signal.items():
            values = np.array([s for s, _ in per_answer.values()], dtype=np.float64)
            mean, sd = values.mean(), values.std() + 1e-6
            weight = self.config.weights.of(name)
            for aid in answers:
                if aid in per_answer:
                    score, pos = per_answer[aid]
                    signals.setdefault(aid, {})[name] = score
                    contribution = weight * (score - mean) / sd
                    if aid not in best_entry or contribution > best_entry[aid][0]:
                        best_entry[aid] = (contribution, pos)
                else:
                    contribution = weight * (values.min() - mean) / sd
                fused[aid] = fused.get(aid, 0.0) + contribution
        self._apply_learned(vector, fused, signals, best_entry, snap, allowed)
        ranked = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
        hits: list[AnswerHit] = []
        scores = [score for _, score in ranked[: max(top_k, 2)]]
        for rank, (aid, score) in enumerate(ranked[:top_k]):
            entry = snap.entries[best_entry[aid][1]]
            dense = signals.get(aid, {}).get("dense_q", 0.0)
            hits.append(
                AnswerHit(
                    answer_id=aid,
                    answer=entry.answer,
                    entry_id=entry.id,
                    question=entry.question,
                    title=entry.title,
                    categories=entry.categories,
                    score=round(score, 4),
                    confidence=round(snap.calibrator.confidence(score, lead(scores, rank), dense), 4),
                    signals={k: round(v, 4) for k, v in signals.get(aid, {}).items()},
                )
            )
        return hits, ranked[:keep]

    def _apply_learned(
        self,
        vector: np.ndarray,
        fused: dict[str, float],
        signals: dict[str, dict[str, float]],
        best_entry: dict[str, tuple[float, int]],
        snap: _Snapshot,
        allowed: frozenset[int] | None,
    ) -> None:
        """Raise answers that similar confirmed requests chose; lower those they rejected."""
        if self.vectors.count("learned") == 0:
            return
        cfg = self.config
        strongest: dict[tuple[str, int], tuple[float, int]] = {}
        for hit in self.vectors.query("learned", vector, 20):
            pos = snap.by_id.get(str(hit.metadata.get("entry_id", "")))
            if pos is None or (allowed is not None and pos not in allowed):
                continue
            key = (snap.answer_of[pos], int(hit.metadata.get("polarity", 0)))
            if key not in strongest or hit.similarity > strongest[key][0]:
                strongest[key] = (hit.similarity, pos)
        floor = min(fused.values(), default=0.0)
        for (aid, polarity), (sim, pos) in strongest.items():
            strength = min(max((sim - cfg.learned_floor) / cfg.learned_span, 0.0), 1.5)
            if strength <= 0:
                continue
            if polarity > 0:
                fused[aid] = fused.get(aid, floor) + cfg.weights.learned * strength
                signals.setdefault(aid, {})["learned"] = sim
                best_entry.setdefault(aid, (0.0, pos))
            elif aid in fused:
                fused[aid] -= cfg.weights.rejected * strength
                signals.setdefault(aid, {})["rejected"] = sim

    @property
    def calibrator(self) -> Calibrator:
        stored = self.store.get_meta("calibration")
        return Calibrator.from_json(stored) if stored else DEFAULT_CALIBRATOR

    def set_calibrator(self, calibrator: Calibrator) -> None:
        self.store.set_meta("calibration", calibrator.to_json())
        self._snapshot = None

    # -- classification and decision -----------------------------------------------------------------
    def _classify(
        self, ranked: Sequence[tuple[str, float]], snap: _Snapshot, temperature: float = 1.0
    ) -> CategoryPrediction:
        """Category levels from the knowledge base's own labels: a vote of the best answers,
        weighted by exp(fused score / T), level by level."""
        if not ranked:
            return CategoryPrediction()
        cats_of = snap.categories_of
        top = ranked[0][1]
        votes = [(cats_of.get(aid, ()), float(np.exp((score - top) / temperature))) for aid, score in ranked]
        levels: list[str] = []
        confidence = 0.0
        alternatives: list[tuple[str, float]] = []
        candidates = votes
        for depth in range(3):
            tally: dict[str, float] = {}
            for cats, w in candidates:
                if len(cats) > depth and cats[depth]:
                    tally[cats[depth]] = tally.get(cats[depth], 0.0) + w
            if not tally:
                break
            total = sum(tally.values())
            best, weight = max(tally.items(), key=lambda kv: (kv[1], kv[0]))
            if depth == 0:
                confidence = weight / total
                alternatives = sorted(((k, round(v / total, 4)) for k, v in tally.items()), key=lambda kv: -kv[1])[:5]
            levels.append(best)
            candidates = [(c, w) for c, w in candidates if len(c) > depth and c[depth] == best]
        return CategoryPrediction(levels=tuple(levels), confidence=round(confidence, 4), alternatives=alternatives)

    def ask(
        self, query: str, *, category: str | None = None, compose: bool = True, policy: DecisionPolicy | None = None
    ) -> EngineResult:
        """Retrieve, classify, decide by ``policy`` (default: ``config.policy``) and, when answering,
        compose a grounded answer."""
        policy = policy or self.config.policy
        language = detect_language(query, default=self.config.default_language)
        hits, prediction = self.search(query, category=category)
        if policy.disabled_entries:
            hits = [h for h in hits if h.entry_id not in policy.disabled_entries]
        level1 = category or (prediction.levels[0] if prediction.levels else None)
        threshold = policy.threshold_for(level1)
        best = hits[0].confidence if hits else 0.0
        decision: Decision = "abstain"
        params: dict[str, str] = {}
        if policy.is_disabled(level1):
            code, params = "category_off", {"category": str(level1)}
        elif not hits:
            code = "nothing_found"
        elif best < threshold:
            code, params = "below_threshold", {"confidence": f"{best:.2f}", "threshold": f"{threshold:.2f}"}
        else:
            decision, code = "answer", ""
        composed: ComposedAnswer | None = None
        if compose and decision == "answer":
            from rag.compose import compose_answer

            composed = compose_answer(
                query, hits, language=language, llm=self.llm,
                words=self.words(language) if self.words is not None else None, **self.llm_options,
            )
        return EngineResult(
            query=query, language=language, category=prediction, hits=hits,
            decision=decision, threshold=threshold, reason=reason_words(code, params), reason_code=code,
            reason_params=params, composed=composed,
        )

    def stats(self) -> dict[str, Any]:
        snap = self._current()
        answers = {e.answer_id for e in snap.entries}
        categories: dict[str, int] = {}
        sources: dict[str, int] = {}
        for e in snap.entries:
            key = e.categories[0] if e.categories else "(none)"
            categories[key] = categories.get(key, 0) + 1
            sources[e.source] = sources.get(e.source, 0) + 1
        return {
            "entries": len(snap.entries),
            "distinct_answers": len(answers),
            "sources": sources,
            "categories_level1": dict(sorted(categories.items(), key=lambda kv: -kv[1])),
            "learned": self.store.learned_counts(),
            "embedding_model": self.embedder.name,
            "embedding_requested": self.embedding.requested,
            "embedding_fallback": self.embedding.fallback_reason,
            "index_built_with": self.store.get_meta("embedding_model"),
            "vectors": {kind: self.vectors.count(kind) for kind in ("q", "qa", "learned")},
            "calibration": self.calibrator.fitted_on,
            "llm": getattr(self.llm, "name", None),
        }


def _q_text(e: KBEntry) -> str:
    """What the lexical index sees of an entry: its title (topic) and question."""
    return f"{e.title}. {e.question}" if e.title and e.title not in e.question else e.question


def _qa_text(e: KBEntry) -> str:
    return f"{e.question} {e.answer[:300]}"


def _categories_of(entries: Sequence[KBEntry], answer_of: Sequence[str]) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for e, aid in zip(entries, answer_of, strict=True):
        if e.categories:
            out.setdefault(aid, e.categories)
    return out


def _positions_of_category(entries: Sequence[KBEntry]) -> dict[str, frozenset[int]]:
    positions: dict[str, set[int]] = {}
    for pos, e in enumerate(entries):
        if e.categories:
            positions.setdefault(e.categories[0], set()).add(pos)
    return {name: frozenset(p) for name, p in positions.items()}


def _entry_meta(e: KBEntry) -> dict[str, str]:
    return {"answer_id": e.answer_id, "cat1": e.categories[0] if e.categories else ""}
