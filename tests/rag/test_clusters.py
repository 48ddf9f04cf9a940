"""Clustering of similar requests and the outage (burst) detector.

Logic on hand-made unit vectors (exact similarities), then the real USE encoder on a synthetic outage
mixed into real requests (tests/rag/outage_stream.py; the benchmark with cross-validated numbers is
bench/bench_outages.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
import pytest

from rag.clusters import BurstConfig, BurstDetector, CharMix, Item, Request, cluster

T0 = datetime(2025, 3, 3, 9, 0)


def unit(*components: float, dim: int = 8) -> np.ndarray:
    v = np.zeros(dim, dtype=np.float32)
    v[: len(components)] = components
    return v / np.linalg.norm(v)


def near(axis: int, wobble: float, dim: int = 8) -> np.ndarray:
    """A vector close to the basis vector ``axis`` (cosine about 1 - wobble²/2)."""
    v = np.zeros(dim, dtype=np.float32)
    v[axis] = 1.0
    v[(axis + 1) % dim] = wobble
    return v / np.linalg.norm(v)


# -- cluster ---------------------------------------------------------------------------------------


def groups() -> tuple[list[Item], np.ndarray]:
    items, vectors = [], []
    for k, (axis, cat) in enumerate([(0, "Почта")] * 4 + [(2, "VPN")] * 3 + [(4, "Печать")] * 1 + [(6, "")] * 1):
        items.append(Item(id=f"t{k}", text=f"request {k}", categories=(cat,) if cat else ()))
        vectors.append(near(axis, 0.05 * (k % 3)))
    return items, np.stack(vectors)


@pytest.mark.parametrize("method", ["agglomerative", "leader"])
def test_cluster_groups_similar_requests(method: str) -> None:
    items, vectors = groups()
    found = cluster(items, vectors, similarity=0.9, min_size=2, method=method)  # type: ignore[arg-type]
    assert [c.size for c in found] == [4, 3]  # the two singletons are not clusters
    mail, vpn = found
    assert set(mail.members) == {"t0", "t1", "t2", "t3"}
    assert mail.categories == (("Почта", 4),)
    assert set(vpn.members) == {"t4", "t5", "t6"}
    # The medoid: t4 (wobble 0.05) sits between t6 (0) and t5 (0.10).
    assert vpn.representative_id == "t4" and vpn.members[0] == "t4"
    assert vpn.representative == "request 4"
    assert 0.99 < vpn.cohesion <= 1.0


def test_cluster_min_size_one_keeps_singletons_and_orders_by_size_then_id() -> None:
    items, vectors = groups()
    found = cluster(items, vectors, similarity=0.9, min_size=1)
    assert [c.size for c in found] == [4, 3, 1, 1]
    assert [c.representative_id for c in found[2:]] == ["t7", "t8"]
    assert found[3].categories == ()  # no category given
    assert found[3].cohesion == 1.0


def test_cluster_auto_switches_to_leader_above_the_limit() -> None:
    items, vectors = groups()
    assert cluster(items, vectors, similarity=0.9, max_agglomerative=3) == cluster(
        items, vectors, similarity=0.9, method="leader")


def test_cluster_edge_cases() -> None:
    assert cluster([], np.zeros((0, 8))) == []
    one = cluster([Item("a", "x")], np.stack([unit(1)]), min_size=1)
    assert one[0].members == ("a",)
    with pytest.raises(ValueError, match="2 items but 1 vectors"):
        cluster([Item("a", "x"), Item("b", "y")], np.stack([unit(1)]))
    with pytest.raises(ValueError, match="similarity"):
        cluster([Item("a", "x")], np.stack([unit(1)]), similarity=0)


# -- burst detector --------------------------------------------------------------------------------


class Lookup:
    """An embed function over fixed vectors: the text names its vector."""

    def __init__(self, table: dict[str, np.ndarray]):
        self.table = table

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.table[t] for t in texts])


MAIL = {f"mail{i}": near(0, 0.02 * i) for i in range(10)}
OTHER = {f"other{i}": unit(*([0.0] * (1 + i % 6)), 1.0) for i in range(12)}
EMBED = Lookup(MAIL | OTHER)
CONFIG = BurstConfig(min_requests=5, window_s=600, similarity=0.9, join_similarity=0.9)


def req(text: str, minutes: float, channel: str = "glpi") -> Request:
    return Request(id=f"{text}@{minutes}", time=T0 + timedelta(minutes=minutes), text=text, channel=channel)


def test_k_near_identical_requests_in_the_window_open_one_incident() -> None:
    d = BurstDetector(EMBED, CONFIG)
    channels = ["glpi", "mail", "chat", "redmine", "mail"]
    out = [d.add(req(f"mail{i}", 2 * i, channels[i])) for i in range(4)]
    assert all(a.incident_id is None for a in out)  # four are not an outage
    d.add(req("other0", 8.5))  # unrelated traffic in between changes nothing
    fifth = d.add(req("mail4", 9, "mail"))
    assert fifth.opened and fifth.incident_id is not None
    assert fifth.pulled_in == ("mail0@0", "mail1@2", "mail2@4", "mail3@6")
    incident = d.incidents[fifth.incident_id]
    assert incident.size == 5 and incident.open
    assert incident.opened_at == T0 and incident.last_at == T0 + timedelta(minutes=9)
    assert incident.representative == "mail0"
    assert incident.channels == {"glpi": 1, "mail": 2, "chat": 1, "redmine": 1}
    # Later requests of the same kind join it, other requests do not.
    later = d.add(req("mail5", 30, "chat"))
    assert later.incident_id == fifth.incident_id and not later.opened
    assert d.add(req("other1", 31)).incident_id is None
    assert incident.size == 6 and incident.channels["chat"] == 2


def test_requests_further_apart_than_the_window_do_not_add_up() -> None:
    d = BurstDetector(EMBED, CONFIG)
    assigned = [d.add(req(f"mail{i}", 11 * i)) for i in range(8)]  # one every 11 minutes: never 5 in 10
    assert all(a.incident_id is None for a in assigned)
    assert d.incidents == {}


def test_a_closed_incident_takes_no_more_requests() -> None:
    d = BurstDetector(EMBED, CONFIG)
    opened = [d.add(req(f"mail{i}", i)) for i in range(5)][-1]
    assert opened.incident_id is not None
    d.close(opened.incident_id, at=T0 + timedelta(minutes=20))
    assert d.open_incidents() == []
    after = [d.add(req(f"mail{i}", 20 + i)) for i in range(5, 9)]
    assert all(a.incident_id is None for a in after)  # back to counting: four so far
    again = d.add(req("mail9", 25))
    assert again.opened and again.incident_id != opened.incident_id
    with pytest.raises(KeyError):
        d.close("inc-unknown")


def test_add_many_embeds_in_batches_and_gives_the_same_answers() -> None:
    calls: list[int] = []

    def embed(texts: Sequence[str]) -> np.ndarray:
        calls.append(len(texts))
        return EMBED(texts)

    stream = [req(f"mail{i}", i) for i in range(6)] + [req("other2", 7)]
    batched = BurstDetector(embed, CONFIG).add_many(stream, batch=4)
    assert calls == [4, 3]
    single = BurstDetector(EMBED, CONFIG)
    assert [(a.incident_id is None, a.opened) for a in batched] == [
        (a.incident_id is None, a.opened) for a in (single.add(r) for r in stream)]


def test_requests_must_arrive_in_order_and_config_is_checked() -> None:
    d = BurstDetector(EMBED, CONFIG)
    d.add(req("mail0", 60))
    d.add(req("mail1", 55))  # a little late (within a window) is fine
    with pytest.raises(ValueError, match="arrival order"):
        d.add(req("mail2", 30))
    for bad in ({"min_requests": 1}, {"window_s": 0}, {"similarity": 1.5}, {"join_similarity": 0}):
        with pytest.raises(ValueError):
            BurstConfig(**bad)  # type: ignore[arg-type]


def test_char_mix_weighs_shared_rare_words() -> None:
    corpus = ["не работает почта", "не работает принтер", "не работает телефон", "забыл пароль", "не работает vpn"]
    zero = CharMix(lambda texts: np.zeros((len(texts), 4), dtype=np.float32) + 0.5, corpus, weight=1.0)
    v = zero(["почта не работает", "не приходит почта", "телефон не работает"])
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0)
    assert v[0] @ v[1] > v[0] @ v[2]  # "почта" is rarer than "не работает": it weighs more
    with pytest.raises(ValueError, match="corpus"):
        CharMix(lambda texts: np.zeros((len(texts), 4)), [])


# -- real encoder, synthetic outages in real traffic ----------------------------------------------


@pytest.mark.slow
def test_outages_are_found_in_real_traffic(use_embedder) -> None:  # type: ignore[no-untyped-def]
    """Three outages (31 requests) in the sample knowledge base's 188 questions at 20 an hour.

    The bar: every outage found, at least 90% of the flagged requests belong to an outage, at least half
    of the outages' requests flagged. Defaults as shipped, CharMix(USE) over the sample KB's questions.
    bench/bench_outages.py reports the cross-validated numbers on all ten outages and the RUTUBE traffic.
    """
    from dataset import SAMPLE_KB
    from dataset.importers import read_kb
    from rag.text import clean_query
    from tests.rag.outage_stream import build_stream, scenarios, score

    questions = [e.question for e in read_kb(SAMPLE_KB).entries]
    chosen = {name: lines for name, lines in scenarios().items() if name in ("mail_down", "vpn_down", "one_c_down")}
    stream = build_stream(questions, chosen, background_per_hour=20, burst_span_s=900, seed=5)
    featurize = CharMix(lambda texts: use_embedder.embed([clean_query(t) for t in texts]), questions)
    result = score(BurstDetector(featurize).add_many(stream.requests), stream.truth)
    print(result)
    assert result.bursts_found == 3
    assert result.request_precision is not None and result.request_precision >= 0.9
    assert result.request_recall >= 0.5
