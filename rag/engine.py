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

import hashlib
import json
import logging
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm import tqdm

from rag.calibration import DEFAULT as DEFAULT_CALIBRATOR
from rag.calibration import Calibrator, lead
from rag.embeddings import Embedder, LoadedEmbedder
from rag.errors import EmptyIndexError, RagError
from rag.jargon import expand as expand_jargon
from rag.kbstore import KBStore, UpsertReport
from rag.learning import (
    MIN_ANSWERED,
    MIN_PAIRS,
    RERANK_FEATURES,
    TARGET_PRECISION,
    Candidate,
    CategoryModel,
    LearnedText,
    Reranker,
    candidate_features,
    cross_fit,
    exclusive,
    now_iso,
    threshold_at_precision,
)
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
#: The threshold when nothing was calibrated on this knowledge base yet.
DEFAULT_THRESHOLD = 0.5
#: Weight of a confirmed request against an entry's question in the category model.
CONFIRMED_REQUEST_WEIGHT = 2.0
#: The reranker is trained on at most this many (the newest) confirmed requests.
MAX_TRAINING_REQUESTS = 2000
#: What the entries' vectors are built from; entries embedded from other text are embedded again by ``sync``.
#: 2: the title with the question in the dense vectors too. 3: (the lexical index's, now :data:`LEXICAL_VERSION`).
ENTRY_TEXT_VERSION = "3"
#: How the lexical index and the category model read text (stop words, stems); an index built otherwise is
#: rebuilt by ``sync`` and the category model refitted, without embedding anything again. 1: before this was
#: kept apart (Snowball's English stop words, none in the character n-grams). 2: a verb's two aspects share a
#: stem («подключается» / «подключиться»).
LEXICAL_VERSION = "2"
#: Part of the digest of the category model's training data (with :data:`LEXICAL_VERSION`): bump it when its
#: features or the parameters of its fit change, so that a kept model is fitted again (:meth:`Engine._category_model`).
CATEGORY_DATA_VERSION = "1"


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
    #: Added × the category model's probability of the answer's first-level category.
    category: float = 1.0

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
    #: How many of the best fused candidates the reranker reorders.
    rerank_depth: int = 20
    #: Share of the category model in the first-level category (the rest is the retrieval vote).
    category_model_weight: float = 0.6
    #: Fit the calibrator and the default threshold on the knowledge base itself at import
    #: (:meth:`Engine.fit_kb_calibration`); ``decision.calibrate_at_import`` in the settings. Conservative
    #: rather than calibrated (README, "Answer quality").
    calibrate_at_import: bool = False
    #: Replace helpdesk jargon in requests before retrieval (rag/jargon.py), with these words added to
    #: (or, with an empty term, removed from) the built-in table.
    expand_jargon: bool = True
    jargon: dict[str, str] = field(default_factory=dict)

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
    #: How many entries carry each answer.
    entries_per_answer: dict[str, int] = field(default_factory=dict)
    category_model: CategoryModel | None = None
    reranker: Reranker | None = None


@dataclass
class _Retrieved:
    """The candidates of one request, before classification and reranking."""

    text: str
    vector: np.ndarray
    candidates: list[Candidate]
    snap: _Snapshot
    #: The category filter the request came with.
    category: str | None
    #: The category model's first-level probabilities for the request (empty without a model or with a filter).
    model_p: dict[str, float] = field(default_factory=dict)


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
        self._popularity_cache: tuple[int, dict[str, tuple[int, int]]] | None = None
        self._learned_text_cache: tuple[int, LearnedText] | None = None
        self._models_dir = config.data_dir / "models"

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
            if self.store.get_meta("entry_text") != ENTRY_TEXT_VERSION:
                # Built by a version that embedded other text of the entries (or never built): embed them all.
                self.store.clear_indexed_entries()
            entries = self.store.entries()
            headings = _section_headings(entries)
            before = frozenset(json.loads(self.store.get_meta("section_headings") or "[]"))
            if headings != before:  # an entry's title became a heading or stopped being one
                self.store.clear_indexed_entries(headings ^ before)
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
                texts = [_dense_text(e, headings) for e in batch]
                self.vectors.upsert("q", ids, self.embedder.embed_queries(texts), meta)
                passages = [f"{t} {e.answer[:300]}" for t, e in zip(texts, batch, strict=True)]
                self.vectors.upsert("qa", ids, self.embedder.embed_passages(passages), meta)
                self.store.mark_indexed(batch)
                bar.update(len(batch))
            bar.close()
            self._index_learned()
            # Stems and stop words changed since the index was built: the lexical index and the category model
            # (which reads word stems) are built again; the vectors stay.
            relex = self.store.get_meta("lexical_text") != LEXICAL_VERSION
            if stale or gone or relex or not (self._lexical_dir / "meta.json").exists():
                if entries:
                    LexicalIndex.build([_q_text(e) for e in entries]).save(self._lexical_dir)
                else:  # bm25s cannot index an empty corpus: an empty KB has no lexical index
                    shutil.rmtree(self._lexical_dir, ignore_errors=True)
                self.store.set_meta("index_version", stable_id(str(time.time_ns()), str(len(entries))))
            self.store.set_meta("embedding_model", self.embedder.name)
            self.store.set_meta("entry_text", ENTRY_TEXT_VERSION)
            self.store.set_meta("lexical_text", LEXICAL_VERSION)
            self.store.set_meta("section_headings", json.dumps(sorted(headings), ensure_ascii=False))
            self._snapshot = None
            if entries and (stale or gone or relex or not (self._models_dir / "category.npz").exists()):
                self.fit_category_model()
                # Opt-in: measured conservative rather than calibrated (README, "Answer quality").
                if (self.config.calibrate_at_import and self.reranker is None
                        and self.calibrator.fitted_on.startswith(("default", "knowledge base"))):
                    self.fit_kb_calibration()
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
        vectors = self.embedder.embed_queries([self._search_text(clean_query(p.query)) for p in pairs])
        self.vectors.upsert(
            "learned",
            [f"l{p.id}" for p in pairs],
            vectors,
            [{"answer_id": p.answer_id, "entry_id": p.entry_id, "polarity": p.polarity} for p in pairs],
        )
        self.store.mark_learned_indexed(p.id for p in pairs)

    def _current(self) -> _Snapshot:
        version = (self.store.get_meta("index_version") or "") + "/" + (self.store.get_meta("models_version") or "")
        snap = self._snapshot
        if snap is not None and snap.version == version:
            return snap
        with self._lock:
            self.vectors.refresh()  # the collections may have been rebuilt by another process
            built_with = self.store.get_meta("embedding_model")
            if built_with:
                self.vectors.ensure_model(self.embedder.name, self.embedder.dim)
            entries = self.store.entries()
            lexical = LexicalIndex.load(self._lexical_dir) if entries and self.store.get_meta("index_version") else None
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
                entries_per_answer=dict(Counter(answer_of)),
                category_model=CategoryModel.load(self._models_dir / "category.npz"),
                reranker=self.reranker,
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

    # -- retrieval -----------------------------------------------------------------------------------
    def search(
        self,
        query: str,
        *,
        top_k: int | None = None,
        category: str | None = None,
        exclude_learned: frozenset[str] = frozenset(),
    ) -> tuple[list[AnswerHit], CategoryPrediction]:
        """The best distinct answers with calibrated confidences, and the predicted category.
        ``exclude_learned`` (ids ``l<n>`` of learned pairs) leaves those pairs out, as if they had not
        been learned (evaluation and training measure a request without its own pair)."""
        retrieved = self._candidates(query, category=category, exclude_learned=exclude_learned)
        return self._finish(retrieved, top_k or self.config.top_k)

    def _candidates(
        self,
        query: str,
        *,
        category: str | None,
        exclude_learned: frozenset[str] = frozenset(),
        exclude_entries: frozenset[int] = frozenset(),
        category_model: CategoryModel | Literal[False] | None = False,
    ) -> _Retrieved:
        """Every answer that one of the signals retrieved, best fused score first. ``category_model``:
        the model whose probabilities enter the fusion (default: the snapshot's)."""
        snap = self._current()
        if not snap.entries or snap.lexical is None:
            raise EmptyIndexError("the knowledge base is empty: import one with `helpdesk-assist kb import FILE`")
        text = clean_query(query)
        search_text = self._search_text(text)
        n = self.config.candidates
        allowed: frozenset[int] | None = None
        where = None
        if category:
            allowed = snap.positions_of_category.get(category, frozenset())
            where = {"cat1": category}
        vector = self.embedder.embed_queries([search_text])[0]
        widen = 4 if allowed is not None else 1
        raw: dict[str, list[tuple[int, float]]] = {
            "bm25": snap.lexical.bm25_top(search_text, n * widen),
            "char": snap.lexical.char_top(search_text, n * widen),
        }
        for kind in ("q", "qa"):
            found = self.vectors.query(kind, vector, n, where=where)
            raw[f"dense_{kind}"] = [(snap.by_id[h.id], h.similarity) for h in found if h.id in snap.by_id]
        if allowed is not None:
            raw = {k: [(i, s) for i, s in v if i in allowed] for k, v in raw.items()}
        if exclude_entries:
            raw = {k: [(i, s) for i, s in v if i not in exclude_entries] for k, v in raw.items()}

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
        answers = {aid for per_answer in per_signal.values() for aid in per_answer}
        cands: dict[str, Candidate] = {}
        best_contribution: dict[str, float] = {}
        for name, per_answer in per_signal.items():
            values = np.array([s for s, _ in per_answer.values()], dtype=np.float64)
            mean, sd = values.mean(), values.std() + 1e-6
            weight = self.config.weights.of(name)
            order = sorted(per_answer, key=lambda a: -per_answer[a][0])
            ranks = {aid: r for r, aid in enumerate(order, start=1)}
            for aid in answers:
                cand = cands.get(aid)
                if aid in per_answer:
                    score, pos = per_answer[aid]
                    z = (score - mean) / sd
                    contribution = weight * z
                    if cand is None:
                        cand = cands[aid] = Candidate(aid, 0.0, pos)
                    cand.raw[name], cand.z[name], cand.rank[name] = score, z, ranks[aid]
                    if aid not in best_contribution or contribution > best_contribution[aid]:
                        best_contribution[aid] = contribution
                        cand.pos = pos
                else:
                    contribution = weight * (values.min() - mean) / sd
                    if cand is None:
                        cand = cands[aid] = Candidate(aid, 0.0, -1)
                cand.fused += contribution
        self._apply_learned(text, vector, cands, snap, allowed, exclude_learned)
        model = snap.category_model if category_model is False else category_model
        model_p: dict[str, float] = {}
        if model is not None and category is None:
            # What the request says about its category, from the model trained on the KB's labels.
            model_p = model.probabilities(vector, search_text)
            w = self.config.weights.category
            for c in cands.values():
                cats = snap.categories_of.get(c.answer_id)
                if cats and w:
                    c.fused += w * model_p.get(cats[0], 0.0)
        ordered = sorted(cands.values(), key=lambda c: (-c.fused, c.answer_id))
        return _Retrieved(
            text=text, vector=vector, candidates=ordered, snap=snap, category=category, model_p=model_p
        )

    def _search_text(self, text: str) -> str:
        """What retrieval sees of a cleaned request: helpdesk jargon in the knowledge base's terms."""
        return expand_jargon(text, self.config.jargon) if self.config.expand_jargon else text

    def _learned_text(self) -> LearnedText:
        """The confirmed requests' character and word vectors (rebuilt when a pair is added or removed)."""
        version = self.store.learned_version()
        cached = self._learned_text_cache
        if cached is None or cached[0] != version:
            pairs = [(f"l{p.id}", p.entry_id, clean_query(p.query)) for p in self.store.learned() if p.polarity > 0]
            cached = (version, LearnedText.build(pairs))
            self._learned_text_cache = cached
        return cached[1]

    def _apply_learned(
        self,
        text: str,
        vector: np.ndarray,
        cands: dict[str, Candidate],
        snap: _Snapshot,
        allowed: frozenset[int] | None,
        exclude: frozenset[str],
    ) -> None:
        """Raise answers that similar confirmed requests chose; lower those they rejected."""
        if self.vectors.count("learned") == 0:
            return
        cfg = self.config
        strongest: dict[tuple[str, int], tuple[float, int]] = {}
        for hit in self.vectors.query("learned", vector, 20 + len(exclude)):
            if hit.id in exclude:
                continue
            pos = snap.by_id.get(str(hit.metadata.get("entry_id", "")))
            if pos is None or (allowed is not None and pos not in allowed):
                continue
            key = (snap.answer_of[pos], int(hit.metadata.get("polarity", 0)))
            if key not in strongest or hit.similarity > strongest[key][0]:
                strongest[key] = (hit.similarity, pos)
        floor = min((c.fused for c in cands.values()), default=0.0)
        # In their own words: features of the reranker only (the fusion stays as measured).
        for entry_id, (chars, words) in self._learned_text().similar(text, exclude).items():
            pos = snap.by_id.get(entry_id)
            if pos is None or (allowed is not None and pos not in allowed):
                continue
            cand = cands.get(snap.answer_of[pos])
            if cand is not None:
                cand.learned_char = max(cand.learned_char, chars)
                cand.learned_word = max(cand.learned_word, words)
        for (aid, polarity), (sim, pos) in strongest.items():
            strength = min(max((sim - cfg.learned_floor) / cfg.learned_span, 0.0), 1.5)
            if polarity > 0:
                cand = cands.get(aid)
                if cand is None:
                    if strength <= 0:
                        continue
                    cand = cands[aid] = Candidate(aid, floor, pos)
                cand.learned_sim = max(cand.learned_sim, sim)
                if strength > 0:
                    cand.fused += cfg.weights.learned * strength
                    cand.raw["learned"] = sim
                if cand.pos < 0:
                    cand.pos = pos
            elif aid in cands:
                cands[aid].rejected_sim = max(cands[aid].rejected_sim, sim)
                if strength > 0:
                    cands[aid].fused -= cfg.weights.rejected * strength
                    cands[aid].raw["rejected"] = sim

    def _finish(self, r: _Retrieved, top_k: int, keep: int = 10) -> tuple[list[AnswerHit], CategoryPrediction]:
        """Classify, rerank (when a reranker is trained) and turn the candidates into hits."""
        snap = r.snap
        cands = [c for c in r.candidates if c.pos >= 0]
        prediction, p_cat = self._classify(r, cands[:keep])
        reranker = snap.reranker
        confidences: list[float]
        if reranker is not None and cands:
            depth = self.config.rerank_depth
            head, tail = cands[:depth], cands[depth:]
            x = self._features(r, head, p_cat)
            p = exclusive(reranker.probability(x))
            order = sorted(range(len(head)), key=lambda i: (-p[i], i))
            cands = [head[i] for i in order] + tail
            calibrated = reranker.confidence(p)
            confidences = [float(calibrated[i]) for i in order] + [0.0] * len(tail)
            # The category again: the category of the right answer where it is among the candidates.
            prediction, _ = self._classify(r, [head[i] for i in order], votes=[float(p[i]) for i in order])
        else:
            scores = [c.fused for c in cands[: max(top_k, 2)]]
            confidences = [
                snap.calibrator.confidence(c.fused, lead(scores, i), c.raw.get("dense_q", 0.0)) if i < top_k else 0.0
                for i, c in enumerate(cands)
            ]
            # The list stays in fused order: an answer further down is never shown as likelier than one above
            # it (the calibrator weighs the dense similarity on its own, which can rank two neighbours the
            # other way round).
            for i in range(1, len(confidences)):
                confidences[i] = min(confidences[i], confidences[i - 1])
        hits: list[AnswerHit] = []
        for c, confidence in zip(cands[:top_k], confidences, strict=False):
            entry = snap.entries[c.pos]
            signals = {k: round(v, 4) for k, v in c.raw.items()}
            hits.append(
                AnswerHit(
                    answer_id=c.answer_id,
                    answer=entry.answer,
                    entry_id=entry.id,
                    question=entry.question,
                    title=entry.title,
                    categories=entry.categories,
                    score=round(c.fused, 4),
                    confidence=round(confidence, 4),
                    signals=signals,
                )
            )
        return hits, prediction

    def _features(
        self,
        r: _Retrieved,
        cands: Sequence[Candidate],
        p_cat: Mapping[str, float],
        discount: Mapping[str, int] | None = None,
    ) -> np.ndarray:
        snap = r.snap
        popularity = self._popularity()
        if discount:
            popularity = dict(popularity)
            for aid, n in discount.items():
                pos, neg = popularity.get(aid, (0, 0))
                popularity[aid] = (max(pos - n, 0), neg)
        cat1 = [snap.categories_of.get(c.answer_id, ("",))[:1] for c in cands]
        best = max(p_cat.items(), key=lambda kv: kv[1])[0] if p_cat else None
        return candidate_features(
            cands,
            depth=self.config.candidates,
            query_chars=len(r.text),
            entry_chars=[len(snap.entries[c.pos].question) for c in cands],
            category_p=[p_cat.get(c1[0], 0.0) if c1 else 0.0 for c1 in cat1],
            category_top=[bool(c1) and c1[0] == best for c1 in cat1],
            confirmed=[popularity.get(c.answer_id, (0, 0))[0] for c in cands],
            rejected=[popularity.get(c.answer_id, (0, 0))[1] for c in cands],
            entries=[snap.entries_per_answer.get(c.answer_id, 1) for c in cands],
        )

    def _popularity(self) -> dict[str, tuple[int, int]]:
        """Confirmed and rejected pairs per answer (cached until a pair is added)."""
        version = self.store.learned_version()
        cached = self._popularity_cache
        if cached is None or cached[0] != version:
            cached = (version, self.store.learned_per_answer())
            self._popularity_cache = cached
        return cached[1]

    def forget_learned(self, ids: Iterable[int] | None = None) -> int:
        """Remove learned pairs (every one with None; a wrong one an admin found) from the store and the
        index; how many there were."""
        with self._lock:
            gone = self.store.delete_learned(ids)
            if ids is None:
                self.vectors.clear("learned")
            else:
                self.vectors.delete("learned", [f"l{i}" for i in gone])
            return len(gone)

    # -- learned models --------------------------------------------------------------------------------
    @property
    def reranker(self) -> Reranker | None:
        stored = self.store.get_meta("reranker")
        return Reranker.from_json(stored) if stored else None

    def _models_changed(self) -> None:
        self.store.set_meta("models_version", stable_id(str(time.time_ns())))
        self._snapshot = None

    def fit_category_model(self) -> CategoryModel | None:
        """Train the first-level category model on the entries' own labels and the confirmed requests
        (under their answer's category); None (and no model) when there are fewer than two categories.
        When what it would be trained on is what the current model was trained on (an import that changed
        only answers, outcomes that were all rejections), the current model is kept: the fit is the
        slowest part of such an import (39 s at 20,000 entries, README "Performance")."""
        with self._lock:
            path = self._models_dir / "category.npz"
            snap = self._current()
            model = self._category_model(snap, with_pairs=True)
            if model is not None and model is snap.category_model:
                return model
            if model is None:
                path.unlink(missing_ok=True)
            else:
                model.save(path)
            self._models_changed()
            return model

    def _category_model(self, snap: _Snapshot, *, with_pairs: bool) -> CategoryModel | None:
        """The category model trained on the entries (and, ``with_pairs``, the confirmed requests): the served
        model (the snapshot's) or the last one trained on the entries alone (``category_kb.npz``, what the
        reranker's training features see) when it was trained on the same data, else a new fit (kept, without
        pairs, for the next refit). The data is compared by a digest of every row's text, label and weight and
        of the text its vector was embedded from, with the embedding model's name: a vector is a function of
        those two."""
        rows = self._category_rows(snap, with_pairs=with_pairs)
        if rows is None:
            return None
        digest = _category_digest(rows, self.embedder.name)
        kb_path = self._models_dir / "category_kb.npz"
        if snap.category_model is not None and snap.category_model.info.get("data") == digest:
            return snap.category_model
        kept = CategoryModel.load(kb_path)
        if kept is not None and kept.info.get("data") == digest:
            return kept
        ids, vectors, _ = self.vectors.vectors("q")
        row_of = {i: n for n, i in enumerate(ids)}
        x = vectors[[row_of[i] for i in rows.entry_ids]]
        model = CategoryModel.fit(
            np.vstack([x, rows.learned_vectors]) if rows.learned else x,
            rows.texts, rows.labels, sample_weight=rows.weights,
            info={"entries": len(rows.entry_ids), "confirmed_requests": rows.learned,
                  "categories": len(set(rows.labels)), "trained_at": now_iso(), "data": digest},
        )
        if model is not None and not with_pairs:
            model.save(kb_path)
        return model

    def _category_rows(self, snap: _Snapshot, *, with_pairs: bool) -> _CategoryRows | None:
        """What the category model is trained on: the indexed entries with a category, then (``with_pairs``)
        the confirmed requests whose answer has one; None when there is nothing."""
        indexed = self.vectors.ids("q")
        headings = _section_headings(snap.entries)
        rows = _CategoryRows()
        for e in snap.entries:
            if e.categories and e.id in indexed:
                rows.entry_ids.append(e.id)
                rows.embedded.append(_dense_text(e, headings))
                rows.texts.append(_q_text(e))
                rows.labels.append(e.categories[0])
        pairs = {p.id: p for p in self.store.learned() if p.polarity > 0} if with_pairs else {}
        lids, lvectors, _ = self.vectors.vectors("learned") if pairs else ([], np.zeros((0, 0)), [])
        keep: list[int] = []
        for n, lid in enumerate(lids):
            p = pairs.get(int(lid[1:]))
            cats = snap.categories_of.get(p.answer_id) if p is not None else None
            if p is not None and cats:
                keep.append(n)
                text = self._search_text(clean_query(p.query))
                rows.embedded.append(text)
                rows.texts.append(text)
                rows.labels.append(cats[0])
        if not rows.labels:
            return None
        rows.learned_vectors = lvectors[keep] if keep else np.zeros((0, 0))
        return rows

    def reranker_training_set(
        self, pairs: Sequence[tuple[str, str, frozenset[str]]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """Features, labels and request numbers of the candidates of (request, right answer id, learned
        ids to leave out); also how many requests had their right answer among the candidates."""
        xs: list[np.ndarray] = []
        ys: list[np.ndarray] = []
        groups: list[np.ndarray] = []
        found = 0
        snap = self._current()
        # The category model that the features see was trained on the entries alone: one trained on
        # these requests too would know their categories and teach the reranker to trust it too much.
        held_out = self._category_model(snap, with_pairs=False)
        for query, answer_id, exclude in pairs:
            r = self._candidates(query, category=None, exclude_learned=exclude, category_model=held_out)
            cands = [c for c in r.candidates if c.pos >= 0][: self.config.rerank_depth]
            if not cands:
                continue
            _, p_cat = self._classify(r, cands[:10])
            # Popularity as if this request's own pairs had not been recorded.
            xs.append(self._features(r, cands, p_cat, discount={answer_id: len(exclude)}))
            y = np.array([int(c.answer_id == answer_id) for c in cands])
            found += int(y.any())
            ys.append(y)
            groups.append(np.full(len(cands), len(groups)))
        if not xs:
            return np.zeros((0, len(RERANK_FEATURES))), np.zeros(0), np.zeros(0), 0
        return np.vstack(xs), np.concatenate(ys), np.concatenate(groups), found

    def fit_reranker(self, *, min_pairs: int = MIN_PAIRS) -> Reranker | None:
        """Train the reranker on the confirmed pairs, each measured with its own pair left out. With
        fewer than ``min_pairs`` distinct confirmed requests it is removed (fused order, calibrator)."""
        with self._lock:
            # The newest requests first, at most MAX_TRAINING_REQUESTS of them (a refit stays bounded).
            pairs = [p for p in reversed(self.store.learned()) if p.polarity > 0]
            seen: dict[str, Any] = {}
            for p in pairs:
                if len(seen) >= MAX_TRAINING_REQUESTS:
                    break
                seen.setdefault(clean_query(p.query), p)
            # A request learned twice is left out with all its copies.
            copies: dict[str, list[int]] = {}
            for p in pairs:
                copies.setdefault(clean_query(p.query), []).append(p.id)
            reranker = None
            if len(seen) >= min_pairs:
                x, y, groups, found = self.reranker_training_set(
                    [(p.query, p.answer_id, frozenset(f"l{i}" for i in copies[q])) for q, p in seen.items()]
                )
                if len(set(y.tolist())) == 2:
                    reranker, conf, right = cross_fit(x, y, groups, info={
                        "confirmed_requests": len(seen), "with_answer_retrieved": found,
                        "candidates": len(y), "trained_at": now_iso(),
                    })
                    # The default threshold: precision@1 about TARGET_PRECISION on these requests, each
                    # measured without its own pair and by a reranker that was not trained on it.
                    t = threshold_at_precision(conf.tolist(), right.tolist(), TARGET_PRECISION,
                                               min_answered=MIN_ANSWERED)
                    reranker = replace(reranker, info={**reranker.info, "threshold": None if t is None else round(t, 4),
                                                       "threshold_target": TARGET_PRECISION,
                                                       "platt": [round(v, 4) for v in reranker.platt]})
                    fitted_on = f"reranker, {len(seen)} confirmed requests"
                    self.set_default_threshold(t if t is not None else 0.95, fitted_on)
            if reranker is None:
                self.store.set_meta("reranker", "")
            else:
                self.store.set_meta("reranker", reranker.to_json())
            self._models_changed()
            return reranker

    def refit_if_due(self, every: int = 25) -> bool:
        """Retrain (:meth:`refit`) once ``every`` pairs were recorded since the last time: how the
        outcomes of every channel reach the category model and the reranker. True when it retrained."""
        counts = self.store.learned_counts()
        total = counts["confirmed"] + counts["rejected"]
        last = int(self.store.get_meta("refit_at_pairs") or 0)
        if total - last < every and total >= last:
            return False
        self.refit()
        return True

    def refit(self) -> dict[str, Any]:
        """Retrain what is learned from the knowledge base and the outcomes: the category model, then
        the reranker (which uses it). What each was trained on."""
        counts = self.store.learned_counts()
        category = self.fit_category_model()
        reranker = self.fit_reranker()
        self.store.set_meta("refit_at_pairs", str(counts["confirmed"] + counts["rejected"]))
        return {"category_model": dict(category.info) if category else None,
                "reranker": dict(reranker.info) if reranker else None}

    def fit_kb_calibration(self, *, limit: int = 300, seed: int = 7) -> Calibrator | None:
        """Calibrate the confidence on this knowledge base from what it contains, before any outcome:
        entries whose answer another entry also carries are asked with themselves left out (the right
        answer is still there: it should be found), as many entries with an answer of their own likewise
        (the right answer is gone: the engine should abstain). The logistic calibrator is fitted on their
        results and the default threshold set to precision@1 about ``TARGET_PRECISION``. None (nothing
        changed) when fewer than 15 entries share an answer."""
        import random

        with self._lock:
            snap = self._current()
            shared = [i for i, aid in enumerate(snap.answer_of) if snap.entries_per_answer.get(aid, 0) > 1]
            alone = [i for i, aid in enumerate(snap.answer_of) if snap.entries_per_answer.get(aid, 0) == 1]
            if len(shared) < 15 or not alone:
                return None
            rng = random.Random(seed)
            half = limit // 2
            shared = rng.sample(shared, min(half, len(shared)))
            alone = rng.sample(alone, min(len(shared), len(alone)))
            same_question: dict[str, set[int]] = {}
            for i, e in enumerate(snap.entries):
                same_question.setdefault(e.question, set()).add(i)
            features: list[tuple[float, float, float]] = []
            labels: list[int] = []
            firsts: list[tuple[tuple[float, float, float], bool]] = []
            for i in [*shared, *alone]:
                e = snap.entries[i]
                r = self._candidates(e.question, category=None, exclude_entries=frozenset(same_question[e.question]))
                cands = [c for c in r.candidates if c.pos >= 0][:5]
                scores = [c.fused for c in cands]
                for n, c in enumerate(cands):
                    f = (c.fused, lead(scores, n), c.raw.get("dense_q", 0.0))
                    features.append(f)
                    labels.append(int(c.answer_id == e.answer_id))
                    if n == 0:
                        firsts.append((f, c.answer_id == e.answer_id))
            if len(set(labels)) < 2:
                return None
            fitted_on = f"knowledge base at import: {len(shared)} + {len(alone)} questions held out"
            calibrator = Calibrator.fit(features, labels, fitted_on=fitted_on)
            self.set_calibrator(calibrator)
            t = threshold_at_precision([calibrator.confidence(*f) for f, _ in firsts], [ok for _, ok in firsts],
                                       TARGET_PRECISION, min_answered=MIN_ANSWERED)
            self.set_default_threshold(t if t is not None else 0.95, fitted_on)
            return calibrator

    def default_threshold(self) -> float:
        """The threshold of a policy that names none: the one that gave precision@1 about
        ``TARGET_PRECISION`` on what this knowledge base was last calibrated with, else 0.5."""
        stored = self.store.get_meta("default_threshold")
        if not stored:
            return DEFAULT_THRESHOLD
        return float(json.loads(stored)["threshold"])

    def set_default_threshold(self, threshold: float, fitted_on: str) -> None:
        self.store.set_meta("default_threshold", json.dumps(
            {"threshold": round(float(threshold), 4), "target_precision": TARGET_PRECISION, "fitted_on": fitted_on,
             "at": now_iso()}, ensure_ascii=False))

    @property
    def calibrator(self) -> Calibrator:
        stored = self.store.get_meta("calibration")
        return Calibrator.from_json(stored) if stored else DEFAULT_CALIBRATOR

    def set_calibrator(self, calibrator: Calibrator) -> None:
        self.store.set_meta("calibration", calibrator.to_json())
        self._snapshot = None

    # -- classification and decision -----------------------------------------------------------------
    def _classify(
        self,
        r: _Retrieved,
        ranked: Sequence[Candidate],
        temperature: float = 1.0,
        votes: Sequence[float] | None = None,
    ) -> tuple[CategoryPrediction, dict[str, float]]:
        """Category levels: the first level from the category model's probabilities mixed
        (``category_model_weight``) with a vote of the best answers' own labels, each weighted by
        exp(fused score / T); or, with ``votes`` (the reranker's exclusive probability that each is the
        right answer), the sum of the votes of each category plus the model's probability times the
        share where none is right (1 - the sum of the votes); the deeper levels by the vote of the answers under that
        first level. Also the first-level probabilities."""
        snap = r.snap
        cats_of = snap.categories_of
        weighted: list[tuple[tuple[str, ...], float]] = []
        if votes is not None:
            weighted = [(cats_of.get(c.answer_id, ()), w) for c, w in zip(ranked, votes, strict=True)]
        elif ranked:
            top = ranked[0].fused
            weighted = [(cats_of.get(c.answer_id, ()), float(np.exp((c.fused - top) / temperature))) for c in ranked]
        tally: dict[str, float] = {}
        for cats, w in weighted:
            if cats and cats[0]:
                tally[cats[0]] = tally.get(cats[0], 0.0) + w
        total = sum(tally.values())
        p_cat = {k: v / total for k, v in tally.items()} if total else {}
        if r.model_p and r.category is None and votes is not None:
            # The votes are exclusive probabilities that each candidate is the right answer: the category is
            # the right answer's where it is among them (their vote), the category model's where none is.
            learned = r.model_p
            none = max(0.0, 1.0 - sum(votes))
            p_cat = {k: tally.get(k, 0.0) + none * learned.get(k, 0.0) for k in {*learned, *tally}}
        elif r.model_p and r.category is None:
            mix = self.config.category_model_weight
            learned = r.model_p
            p_cat = {k: mix * learned.get(k, 0.0) + (1 - mix) * p_cat.get(k, 0.0) for k in {*learned, *p_cat}}
        elif r.category is not None:
            p_cat = {r.category: 1.0}
        if not p_cat:
            return CategoryPrediction(), p_cat
        best, confidence = max(p_cat.items(), key=lambda kv: (kv[1], kv[0]))
        alternatives = sorted(((k, round(v, 4)) for k, v in p_cat.items() if v > 0), key=lambda kv: -kv[1])[:5]
        levels = [best]
        candidates = [(c, w) for c, w in weighted if c and c[0] == best]
        for depth in range(1, 3):
            sub: dict[str, float] = {}
            for cats, w in candidates:
                if len(cats) > depth and cats[depth]:
                    sub[cats[depth]] = sub.get(cats[depth], 0.0) + w
            if not sub:
                break
            level = max(sub.items(), key=lambda kv: (kv[1], kv[0]))[0]
            levels.append(level)
            candidates = [(c, w) for c, w in candidates if len(c) > depth and c[depth] == level]
        prediction = CategoryPrediction(
            levels=tuple(levels), confidence=round(confidence, 4), alternatives=alternatives
        )
        return prediction, p_cat

    def ask(
        self, query: str, *, category: str | None = None, compose: bool = True, policy: DecisionPolicy | None = None
    ) -> EngineResult:
        """Retrieve, classify, decide by ``policy`` (default: ``config.policy``) and, when answering,
        compose a grounded answer."""
        policy = policy or self.config.policy
        language = detect_language(query, default=self.config.default_language)
        hits, prediction = self.search(query, category=category)
        hits = policy.enabled(hits)
        level1 = category or (prediction.levels[0] if prediction.levels else None)
        threshold = policy.threshold_for(level1, default=self.default_threshold())
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
            "default_threshold": json.loads(self.store.get_meta("default_threshold") or "null"),
            "category_model": dict(snap.category_model.info) if snap.category_model else None,
            "reranker": {**snap.reranker.info, "weights": snap.reranker.weights()} if snap.reranker else None,
            "llm": getattr(self.llm, "name", None),
        }


@dataclass
class _CategoryRows:
    """The category model's training rows: the entries' first, then the confirmed requests'."""

    entry_ids: list[str] = field(default_factory=list)
    #: The text each row's vector was embedded from (an entry's dense text, a request's own text).
    embedded: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    learned_vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    @property
    def learned(self) -> int:
        return len(self.learned_vectors)

    @property
    def weights(self) -> list[float]:
        # A confirmed request counts twice an entry's question: it is written the way requests are.
        return [1.0] * len(self.entry_ids) + [CONFIRMED_REQUEST_WEIGHT] * self.learned


def _category_digest(rows: _CategoryRows, embedder: str) -> str:
    """Which data a category model was trained on (:meth:`Engine._category_model`), the rows in any order."""
    h = hashlib.sha256("\x1e".join((CATEGORY_DATA_VERSION, LEXICAL_VERSION, embedder)).encode("utf-8"))
    for row in sorted("\x1f".join((e, t, lb, repr(w)))
                      for e, t, lb, w in zip(rows.embedded, rows.texts, rows.labels, rows.weights, strict=True)):
        h.update(row.encode("utf-8") + b"\x1e")
    return h.hexdigest()[:32]


def _q_text(e: KBEntry) -> str:
    """What the lexical index sees of an entry: its title (topic) and question."""
    return f"{e.title}. {e.question}" if e.title and e.title not in e.question else e.question


def _section_headings(entries: Sequence[KBEntry]) -> frozenset[str]:
    """Titles that entries with different answers share: a FAQ's section headings ("Монетизация" over a dozen
    questions), not a ticket's subject."""
    answers: dict[str, set[str]] = {}
    for e in entries:
        if e.title:
            answers.setdefault(e.title, set()).add(e.answer_id)
    return frozenset(title for title, ids in answers.items() if len(ids) > 1)


def _dense_text(e: KBEntry, headings: frozenset[str]) -> str:
    """What an entry's vectors are built from (the question + answer vector adds the answer's start): its
    question with its title where the title is the entry's own subject. A ticket's subject names the problem in
    the few words a request uses, where the description often only tells the story ("after my holiday I can't
    remember it"); on the sample knowledge base's probe set, hit@1 of the dense question signal alone went from
    0.72 to 0.89 with it. A section heading stays out: it makes the entries of a section alike (on the RUTUBE
    FAQ, 17 headings over 318 entries, hit@1 fell 0.589 -> 0.579 with them)."""
    return e.question if e.title in headings else _q_text(e)


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
