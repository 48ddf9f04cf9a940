"""Groups of similar requests: knowledge gaps (what nobody's entry answers) and outages (bursts).

Two tools over L2-normalized sentence embeddings (the engine's embedder), so similarity is a dot
product:

* :func:`cluster` groups a batch of requests — the ones the engine abstained on or that users rejected,
  or the replayed tickets the knowledge base would not have answered — into clusters of similar
  requests, each with its size, a representative (the medoid: the member most similar to the others),
  its categories and its members. Average-linkage agglomerative clustering with a cosine distance
  threshold (scikit-learn) for up to ``max_agglomerative`` requests; above that, where its quadratic
  distance matrix would not fit, leader clustering (one pass: join the most similar leader, or lead a
  new cluster), which is what a stream can afford.
* :class:`BurstDetector` watches a stream of requests from every channel and opens an incident when at
  least ``min_requests`` near-identical requests arrive within ``window_s`` seconds ("почта не работает"
  five times in ten minutes); later requests similar to an open incident join it until it is closed.

Nothing here imports anything above ``rag``; the texts are never logged.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import numpy as np

from rag.models import stable_id

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# Clustering a batch


@dataclass(frozen=True)
class Item:
    """One request to cluster."""

    id: str
    text: str
    #: Category levels (from the ticket, or predicted); the first level is tallied per cluster.
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cluster:
    """Similar requests; ``members`` are ids, best representative first."""

    size: int
    representative_id: str
    representative: str
    members: tuple[str, ...]
    #: First-level categories of the members, most frequent first.
    categories: tuple[tuple[str, int], ...]
    #: Mean similarity of the members to the representative (1.0 for a cluster of one).
    cohesion: float


Method = Literal["auto", "agglomerative", "leader"]


def cluster(
    items: Sequence[Item],
    vectors: np.ndarray,
    *,
    similarity: float = 0.75,
    min_size: int = 2,
    method: Method = "auto",
    max_agglomerative: int = 2000,
) -> list[Cluster]:
    """Clusters of at least ``min_size`` items whose members are ``similarity``-close, biggest first.

    ``vectors`` holds one L2-normalized row per item. With ``method="auto"`` batches up to
    ``max_agglomerative`` items use average-linkage agglomerative clustering (every member within an
    average cosine similarity ``similarity`` of the others); bigger ones use leader clustering.
    Ties in size are broken by the representative's id, so the order is stable.
    """
    n = len(items)
    if vectors.shape[0] != n:
        raise ValueError(f"{n} items but {vectors.shape[0]} vectors")
    if not 0.0 < similarity <= 1.0:
        raise ValueError(f"similarity must be in (0, 1], got {similarity}")
    if n == 0:
        return []
    vectors = np.asarray(vectors, dtype=np.float32)
    use = method if method != "auto" else ("agglomerative" if n <= max_agglomerative else "leader")
    if use == "agglomerative":
        labels = _agglomerative(vectors, similarity)
    elif use == "leader":
        labels = _leader(vectors, similarity)
    else:
        raise ValueError(f"unknown clustering method {method!r}")
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(int(label), []).append(i)
    out = [_describe(items, vectors, members) for members in groups.values() if len(members) >= min_size]
    out.sort(key=lambda c: (-c.size, c.representative_id))
    return out


def _agglomerative(vectors: np.ndarray, similarity: float) -> np.ndarray:
    if len(vectors) == 1:
        return np.zeros(1, dtype=np.int64)
    from sklearn.cluster import AgglomerativeClustering

    model = AgglomerativeClustering(
        n_clusters=None, metric="cosine", linkage="average", distance_threshold=1.0 - similarity
    )
    return np.asarray(model.fit_predict(vectors))


def _average_linkage(vectors: np.ndarray, similarity: float) -> np.ndarray:
    """Flat clusters of average-linkage hierarchical clustering cut at cosine distance 1 - similarity."""
    from scipy.cluster.hierarchy import fcluster, linkage

    distances = np.clip(1.0 - vectors @ vectors.T, 0.0, 2.0)
    condensed = distances[np.triu_indices(len(vectors), 1)]
    tree = linkage(condensed, method="average")
    return np.asarray(fcluster(tree, t=1.0 - similarity, criterion="distance"))


def _leader(vectors: np.ndarray, similarity: float) -> np.ndarray:
    """One pass: each vector joins its most similar leader when close enough, else leads a new cluster."""
    leaders = np.empty_like(vectors)
    count = 0
    labels = np.empty(len(vectors), dtype=np.int64)
    for i, v in enumerate(vectors):
        if count:
            sims = leaders[:count] @ v
            best = int(np.argmax(sims))
            if sims[best] >= similarity:
                labels[i] = best
                continue
        leaders[count] = v
        labels[i] = count
        count += 1
    return labels


_MEDOID_SAMPLE = 2000


def _describe(items: Sequence[Item], vectors: np.ndarray, members: list[int]) -> Cluster:
    sub = vectors[members]
    # The medoid among (at most) the first 2,000 members: bounded memory for a huge cluster.
    candidates = sub[:_MEDOID_SAMPLE]
    sims = candidates @ sub.T
    best = int(np.argmax(sims.sum(axis=1)))
    medoid = members[best]
    cohesion = float(sims[best].mean()) if len(members) > 1 else 1.0
    ordered = [medoid, *(m for m in members if m != medoid)]
    tally = Counter(items[m].categories[0] for m in members if items[m].categories)
    return Cluster(
        size=len(members),
        representative_id=items[medoid].id,
        representative=items[medoid].text,
        members=tuple(items[m].id for m in ordered),
        categories=tuple(sorted(tally.items(), key=lambda kv: (-kv[1], kv[0]))),
        cohesion=round(cohesion, 4),
    )


# --------------------------------------------------------------------------------------------------
# Outages: bursts of near-identical requests


class CharMix:
    """A sentence embedding with character n-gram TF-IDF appended: the vectors the burst detector compares.

    People who hit the same outage write the same few words ("почта", "Outlook", "не приходят"), with
    typos; a sentence encoder alone puts "не работает почта" about as close to "не работает телефон"
    as to "Outlook не подключается". Character 3–5-grams weighted by IDF over ``corpus`` (the
    knowledge base's questions, or past requests: words every request uses, such as "не работает",
    weigh little) add the shared words. The two parts are L2-normalized, the n-gram part scaled by
    ``weight``, and the whole normalized again, so a dot product stays a cosine. Measured on synthetic
    outages in bench/bench_outages.py (README, "Outages").
    """

    def __init__(self, embed: Callable[[Sequence[str]], np.ndarray], corpus: Sequence[str], *, weight: float = 0.5):
        from sklearn.feature_extraction.text import HashingVectorizer

        if not corpus:
            raise ValueError("CharMix needs a corpus to weigh the n-grams (the knowledge base's questions)")
        self.embed = embed
        self.weight = weight
        self._hasher = HashingVectorizer(
            analyzer="char_wb", ngram_range=(3, 5), n_features=2**14, alternate_sign=False, norm=None, lowercase=True
        )
        counts = self._hasher.transform(list(corpus))
        df = np.asarray((counts > 0).sum(axis=0)).ravel()
        self._idf = (np.log((1 + len(corpus)) / (1 + df)) + 1).astype(np.float32)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        dense = np.asarray(self.embed(texts), dtype=np.float32)
        chars = self._hasher.transform(list(texts)).multiply(self._idf).toarray().astype(np.float32)
        chars /= np.maximum(np.linalg.norm(chars, axis=1, keepdims=True), 1e-9)
        both = np.hstack([dense, self.weight * chars])
        return both / np.maximum(np.linalg.norm(both, axis=1, keepdims=True), 1e-9)


@dataclass(frozen=True)
class BurstConfig:
    """When requests make an outage. The similarities suit :class:`CharMix` vectors of the bundled USE
    encoder (chosen by cross-validation in bench/bench_outages.py); other vectors need their own."""

    #: Near-identical requests it takes to open an incident ...
    min_requests: int = 5
    #: ... within this many seconds of each other.
    window_s: float = 600.0
    #: Average cosine similarity within the group that opens an incident (average linkage).
    similarity: float = 0.3
    #: Similarity to an open incident's centroid from which a later request joins it.
    join_similarity: float = 0.6

    def __post_init__(self) -> None:
        if self.min_requests < 2:
            raise ValueError(f"min_requests must be at least 2, got {self.min_requests}")
        if self.window_s <= 0:
            raise ValueError(f"window_s must be positive, got {self.window_s}")
        for name in ("similarity", "join_similarity"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value}")


@dataclass(frozen=True)
class Request:
    """One request in the stream: its id, when it arrived, its text and the channel it came through."""

    id: str
    time: datetime
    text: str
    channel: str = ""


@dataclass
class Incident:
    id: str
    opened_at: datetime
    last_at: datetime
    #: The text of the request that opened it (the banner's "known problem: ..." is written from it).
    representative: str
    members: list[str]
    channels: Counter[str]
    open: bool = True
    closed_at: datetime | None = None
    _sum: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32), repr=False)

    @property
    def size(self) -> int:
        return len(self.members)

    def centroid(self) -> np.ndarray:
        norm = float(np.linalg.norm(self._sum))
        return self._sum / norm if norm else self._sum


@dataclass(frozen=True)
class Assignment:
    """What the detector did with one request."""

    request_id: str
    #: The incident the request belongs to, if any.
    incident_id: str | None
    #: True when this request opened the incident (its earlier members were assigned with it).
    opened: bool = False
    #: Earlier requests that this opening pulled into the incident (empty unless ``opened``).
    pulled_in: tuple[str, ...] = ()
    similarity: float = 0.0


@dataclass
class _Recent:
    id: str
    time: datetime
    ts: float
    channel: str
    text: str
    vector: np.ndarray


class BurstDetector:
    """Opens an incident when ``min_requests`` near-identical requests arrive within ``window_s``.

    Feed requests in arrival order (:meth:`add`, or :meth:`add_many`, which embeds a batch at once).
    Each request first tries the open incidents (similarity to the incident's centroid at least
    ``join_similarity``); otherwise it is compared with the requests of the last ``window_s`` seconds
    that belong to no incident, and when at least ``min_requests - 1`` of them are ``similarity``-close
    to it, they open an incident together. Channels do not matter for the grouping (mail, GLPI,
    Redmine and chat about one outage are one incident) and are counted per incident. Incidents stay
    open until :meth:`close` (an admin's decision); memory is bounded by the traffic of one window.
    """

    def __init__(self, embed: Callable[[Sequence[str]], np.ndarray], config: BurstConfig | None = None):
        self.embed = embed
        self.config = config or BurstConfig()
        self.incidents: dict[str, Incident] = {}
        self._recent: deque[_Recent] = deque()
        self._last_ts: float | None = None

    def open_incidents(self) -> list[Incident]:
        return [i for i in self.incidents.values() if i.open]

    def close(self, incident_id: str, *, at: datetime | None = None) -> None:
        incident = self.incidents.get(incident_id)
        if incident is None:
            raise KeyError(f"unknown incident {incident_id!r}")
        incident.open = False
        incident.closed_at = at
        log.info("incident_closed: %s (%d requests)", incident_id, incident.size)

    def add_many(self, requests: Sequence[Request], *, batch: int = 256) -> list[Assignment]:
        out: list[Assignment] = []
        for start in range(0, len(requests), batch):
            chunk = requests[start : start + batch]
            vectors = self.embed([r.text for r in chunk])
            out.extend(self.add(r, vector=v) for r, v in zip(chunk, vectors, strict=True))
        return out

    def add(self, request: Request, *, vector: np.ndarray | None = None) -> Assignment:
        cfg = self.config
        v = np.asarray(self.embed([request.text])[0] if vector is None else vector, dtype=np.float32)
        ts = request.time.timestamp()
        if self._last_ts is not None and ts < self._last_ts - cfg.window_s:
            raise ValueError(
                f"request {request.id!r} arrived at {request.time.isoformat()}, more than a window before "
                "the previous one: feed requests in arrival order"
            )
        self._last_ts = ts if self._last_ts is None else max(self._last_ts, ts)
        while self._recent and self._recent[0].ts < self._last_ts - cfg.window_s:
            self._recent.popleft()

        best_incident, best_sim = None, -1.0
        for incident in self.incidents.values():
            if incident.open:
                sim = float(incident.centroid() @ v)
                if sim > best_sim:
                    best_incident, best_sim = incident, sim
        if best_incident is not None and best_sim >= cfg.join_similarity:
            self._join(best_incident, request, v)
            return Assignment(request.id, best_incident.id, similarity=round(best_sim, 4))

        close = self._burst_with(v, ts) if len(self._recent) + 1 >= cfg.min_requests else []
        if len(close) + 1 >= cfg.min_requests:
            incident = self._open(close, request, v)
            pulled = tuple(r.id for r in close)
            return Assignment(request.id, incident.id, opened=True, pulled_in=pulled, similarity=1.0)
        self._recent.append(_Recent(request.id, request.time, ts, request.channel, request.text, v))
        return Assignment(request.id, None)

    def _burst_with(self, v: np.ndarray, ts: float) -> list[_Recent]:
        """The recent requests that fall in one average-linkage cluster with ``v``.

        Average linkage rather than "similar to the newest request": people describe one outage in many
        words, so two of its requests may be far apart while the group as a whole is close; and a
        cluster must be close on average, so one vague request does not chain unrelated ones together.
        """
        recent = [r for r in self._recent if ts - r.ts <= self.config.window_s]
        if len(recent) + 1 < self.config.min_requests:
            return []
        vectors = np.vstack([*(r.vector for r in recent), v])
        labels = _average_linkage(vectors, self.config.similarity)
        return [r for r, label in zip(recent, labels[:-1], strict=True) if label == labels[-1]]

    def _join(self, incident: Incident, request: Request, v: np.ndarray) -> None:
        incident.members.append(request.id)
        incident.channels[request.channel] += 1
        incident.last_at = max(incident.last_at, request.time)
        incident._sum = incident._sum + v

    def _open(self, close: list[_Recent], request: Request, v: np.ndarray) -> Incident:
        taken = {id(r) for r in close}
        self._recent = deque(r for r in self._recent if id(r) not in taken)
        first = close[0] if close else None
        incident = Incident(
            id="inc-" + stable_id(request.id, str(request.time.timestamp())),
            opened_at=first.time if first else request.time,
            last_at=request.time,
            representative=first.text if first else request.text,
            members=[*(r.id for r in close), request.id],
            channels=Counter([*(r.channel for r in close), request.channel]),
            _sum=np.sum([*(r.vector for r in close), v], axis=0).astype(np.float32),
        )
        self.incidents[incident.id] = incident
        log.warning(
            "incident_opened: %s (%d near-identical requests within %.0f s, channels %s)",
            incident.id, incident.size, self.config.window_s, ", ".join(sorted(incident.channels)),
        )
        return incident
