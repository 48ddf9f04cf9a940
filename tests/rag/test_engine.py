"""Engine logic with the deterministic HashingEmbedder and a scripted fake LLM (fast, no models)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from plugin.i18n import words
from rag.embeddings import HashingEmbedder
from rag.engine import ENTRY_TEXT_VERSION, LEXICAL_VERSION, Engine, EngineConfig
from rag.errors import EmptyIndexError, IndexMismatchError, RagError
from rag.learning import CategoryModel
from rag.models import KBEntry
from rag.policy import DecisionPolicy

VPN = "VPN и удалённый доступ"
ACCOUNTS = "Учётные записи"
PRINT = "Печать"
MAIL = "Почта"
SOURCE = "kb.xlsx"

RESET_ANSWER = (
    "Сбросьте пароль на портале самообслуживания https://id.example.ru: войдите по SMS-коду, "
    "задайте новый пароль и подождите 5 минут, пока он разойдётся по контроллерам домена."
)


def _entry(id_: str, question: str, answer: str, categories: tuple[str, ...], title: str) -> KBEntry:
    return KBEntry(id=id_, question=question, answer=answer, title=title, categories=categories, source=SOURCE)


ENTRIES = [
    _entry(
        "vpn-809",
        "Не подключается VPN, ошибка 809",
        "Проверьте доступ в интернет, перезапустите FortiClient и подключитесь снова. "
        "Ошибка 809 означает, что провайдер блокирует порт: подключитесь через мобильный интернет.",
        (VPN, "Подключение"),
        "VPN: ошибка подключения",
    ),
    _entry(
        "vpn-install",
        "Как установить клиент VPN на домашний компьютер",
        "Скачайте FortiClient VPN с портала software.example.ru, установите его и импортируйте "
        "конфигурацию из письма администратора.",
        (VPN, "Установка"),
        "Установка VPN",
    ),
    _entry(
        "vpn-slow",
        "VPN очень медленно работает, файлы с сетевого диска открываются долго",
        "Отключите VPN и подключитесь к ближайшему шлюзу vpn-msk. Большие файлы копируйте на "
        "компьютер, а не открывайте по сети.",
        (VPN, "Скорость"),
        "Медленный VPN",
    ),
    _entry("pwd-forgot", "Забыл пароль от учётной записи Windows", RESET_ANSWER, (ACCOUNTS, "Пароль"), "Сброс пароля"),
    # The same answer as pwd-forgot, written in another case and spacing: one distinct answer.
    _entry(
        "pwd-locked",
        "Учётная запись заблокирована после нескольких попыток ввода пароля",
        "  " + RESET_ANSWER.upper().replace(" ", "  ") + "\n",
        (ACCOUNTS, "Блокировка"),
        "Учётная запись заблокирована",
    ),
    _entry(
        "pwd-change",
        "Как сменить пароль в домене самостоятельно",
        "Нажмите Ctrl+Alt+Del, выберите «Изменить пароль», введите старый и новый пароль. "
        "Новый пароль должен быть не короче 12 символов.",
        (ACCOUNTS, "Пароль"),
        "Смена пароля",
    ),
    _entry(
        "print-jam",
        "Принтер зажевал бумагу",
        "Выключите принтер, откройте заднюю крышку и аккуратно вытяните лист по ходу движения бумаги.",
        (PRINT, "Неисправность"),
        "Замятие бумаги",
    ),
    _entry(
        "print-queue",
        "Принтер не печатает, в очереди висят документы",
        "Откройте «Устройства и принтеры», очистите очередь печати и перезапустите службу диспетчера печати (Spooler).",
        (PRINT, "Очередь"),
        "Принтер не печатает",
    ),
    _entry(
        "print-add",
        "Как добавить сетевой принтер на компьютер",
        "Откройте \\\\print.example.ru, найдите принтер по номеру кабинета и дважды щёлкните по нему.",
        (PRINT, "Подключение"),
        "Подключение принтера",
    ),
    _entry(
        "mail-full",
        "Outlook пишет, что почтовый ящик переполнен",
        "Удалите старые письма из папок «Отправленные» и «Удалённые» и очистите корзину; "
        "квоту ящика можно увеличить заявкой руководителя.",
        (MAIL, "Квота"),
        "Ящик переполнен",
    ),
    _entry(
        "mail-connect",
        "Outlook не подключается к серверу Exchange, висит «Попытка подключения»",
        "Закройте Outlook, проверьте VPN вне офиса и запустите outlook.exe /resetnavpane.",
        (MAIL, "Подключение"),
        "Outlook не подключается",
    ),
    _entry(
        "mail-signature",
        "Как настроить подпись в письмах Outlook",
        "Файл → Параметры → Почта → Подписи: создайте подпись по шаблону с портала.",
        (MAIL, "Настройка"),
        "Подпись в Outlook",
    ),
]
BY_ID = {e.id: e for e in ENTRIES}


class CountingEmbedder(HashingEmbedder):
    """The HashingEmbedder, remembering every text it embedded."""

    def __init__(self, dim: int = 256):
        super().__init__(dim)
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts.extend(texts)
        return super().embed(texts)


@dataclass
class ScriptedLLM:
    """A fake LLM backend: answers with the queued replies, records every call."""

    replies: list[str] = field(default_factory=list)
    calls: list[list[dict[str, str]]] = field(default_factory=list)
    name: str = "scripted"

    def generate(
        self, messages: list[dict[str, str]], *, max_new_tokens: int, temperature: float, timeout_s: float
    ) -> str:
        self.calls.append(messages)
        return self.replies.pop(0)


def make_engine(data_dir: Path, embedder: HashingEmbedder | None = None, **config: Any) -> Engine:
    return Engine(EngineConfig(data_dir=data_dir, **config), embedder or HashingEmbedder(), words=words)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    e = make_engine(tmp_path)
    e.import_entries(ENTRIES)
    return e


def ids(engine: Engine, query: str, **kw: Any) -> list[str]:
    hits, _ = engine.search(query, **kw)
    return [h.entry_id for h in hits]


def rank_of(engine: Engine, query: str, answer_id: str) -> int | None:
    hits, _ = engine.search(query, top_k=len(ENTRIES))
    found = [h.answer_id for h in hits]
    return found.index(answer_id) if answer_id in found else None


# -- retrieval -------------------------------------------------------------------------------------
def test_answers_are_distinct_and_entries_sharing_one_answer_give_one_hit(engine: Engine) -> None:
    assert BY_ID["pwd-forgot"].answer_id == BY_ID["pwd-locked"].answer_id
    hits, prediction = engine.search("забыл пароль, учётная запись заблокирована", top_k=10)
    answer_ids = [h.answer_id for h in hits]
    assert len(answer_ids) == len(set(answer_ids))
    assert answer_ids[0] == BY_ID["pwd-forgot"].answer_id
    assert sum(h.entry_id in ("pwd-forgot", "pwd-locked") for h in hits) == 1
    assert prediction.levels[0] == ACCOUNTS
    # 12 entries, 11 distinct answers: asking for all of them gives 11 hits.
    assert len(engine.search("пароль", top_k=20)[0]) == 11


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Принтер зажевал бумагу", "print-jam"),
        ("Добрый день! Принтер не печатает, документы висят в очереди.\nС уважением, Надежда", "print-queue"),
        ("Outlook: почтовый ящик переполнен", "mail-full"),
        ("не подключается vpn 809", "vpn-809"),
    ],
)
def test_search_finds_the_matching_entry_first(engine: Engine, query: str, expected: str) -> None:
    hits, prediction = engine.search(query)
    assert hits[0].entry_id == expected
    assert hits[0].answer == BY_ID[expected].answer
    assert prediction.levels[0] == BY_ID[expected].categories[0]


def test_confidences_are_probabilities_decreasing_down_the_list(engine: Engine) -> None:
    for query in ("принтер не печатает", "Outlook не подключается", "забыл пароль", "медленный VPN"):
        hits, _ = engine.search(query, top_k=10)
        confidences = [h.confidence for h in hits]
        assert all(0.0 <= c <= 1.0 for c in confidences)
        assert confidences == sorted(confidences, reverse=True), query
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert confidences[0] > confidences[-1]


def test_category_filter_returns_only_that_category(engine: Engine) -> None:
    # A printer request, restricted to the VPN category: only VPN answers come back.
    hits, _ = engine.search("принтер не печатает", category=VPN, top_k=10)
    assert hits
    assert {h.categories[0] for h in hits} == {VPN}
    assert {h.entry_id for h in hits} == {"vpn-809", "vpn-install", "vpn-slow"}
    assert ids(engine, "принтер не печатает")[0] == "print-queue"
    assert len(ids(engine, "принтер не печатает")) == 5  # EngineConfig.top_k


def test_a_category_without_entries_finds_nothing_and_abstains(engine: Engine) -> None:
    result = engine.ask("принтер не печатает", category="Нет такой категории", policy=DecisionPolicy(threshold=0.0))
    assert result.hits == []
    assert result.decision == "abstain"
    assert result.reason == "nothing relevant found in the knowledge base"
    assert result.composed is None


# -- importing -------------------------------------------------------------------------------------
def test_reimport_of_the_same_entries_embeds_nothing(tmp_path: Path) -> None:
    embedder = CountingEmbedder()
    engine = make_engine(tmp_path, embedder)
    first = engine.import_entries(ENTRIES)
    assert (first.imported, first.updated, first.unchanged) == (12, 0, 0)
    assert len(embedder.texts) == 2 * len(ENTRIES)  # question, and question + answer

    embedder.texts.clear()
    again = engine.import_entries(ENTRIES)
    assert (again.imported, again.updated, again.unchanged, again.removed) == (0, 0, 12, 0)
    assert embedder.texts == []
    assert engine.sync() == 0


def test_the_title_is_embedded_with_the_question(tmp_path: Path) -> None:
    embedder = CountingEmbedder()
    make_engine(tmp_path, embedder).import_entries(ENTRIES)
    vpn = BY_ID["vpn-809"]
    assert vpn.title not in vpn.question
    # The question vector and the question + answer vector both see the subject line.
    assert f"{vpn.title}. {vpn.question}" in embedder.texts
    assert f"{vpn.title}. {vpn.question} {vpn.answer[:300]}" in embedder.texts


def test_a_title_that_entries_with_different_answers_share_is_a_heading_and_stays_out_of_the_vectors(
    tmp_path: Path,
) -> None:
    embedder = CountingEmbedder()
    engine = make_engine(tmp_path, embedder)
    first = _entry("faq-1", "Как настроить подпись в Outlook?", "Файл → Параметры → Почта → Подписи.", (MAIL,), "Почта")
    engine.import_entries([first])
    assert embedder.texts[0] == "Почта. Как настроить подпись в Outlook?"  # its own subject, so far

    embedder.texts.clear()
    second = _entry("faq-2", "Как включить автоответ?", "Файл → Автоматические ответы.", (MAIL,), "Почта")
    engine.import_entries([first, second])
    # "Почта" is now a section heading: both entries are embedded again, without it.
    assert sorted(t for t in embedder.texts if not t.endswith(".")) == [
        "Как включить автоответ?", "Как настроить подпись в Outlook?"
    ]

    embedder.texts.clear()
    engine.import_entries([first], prune_source=SOURCE)
    assert embedder.texts[0] == "Почта. Как настроить подпись в Outlook?"  # a subject again


def test_an_index_built_from_older_entry_text_is_rebuilt_once(tmp_path: Path) -> None:
    first = make_engine(tmp_path)
    first.import_entries(ENTRIES)
    first.learn("впн не пашет из дома", "vpn-809", positive=True)
    embedder = CountingEmbedder()
    engine = make_engine(tmp_path, embedder)
    engine.store.set_meta("entry_text", "1")  # as left by a version that embedded the question alone
    assert engine.sync() == len(ENTRIES)
    assert engine.store.get_meta("entry_text") == ENTRY_TEXT_VERSION
    # The entries are embedded again (query and passage vectors), the confirmed request is not: its text did not change.
    assert len(embedder.texts) == 2 * len(ENTRIES) and not any("пашет" in t for t in embedder.texts)
    assert engine.sync() == 0
    assert ids(engine, "Не подключается VPN, ошибка 809")[0] == "vpn-809"


def test_a_lexical_index_built_with_older_stems_is_rebuilt_without_embedding_anything(tmp_path: Path) -> None:
    make_engine(tmp_path).import_entries(ENTRIES)
    embedder = CountingEmbedder()
    engine = make_engine(tmp_path, embedder)
    engine.store.set_meta("lexical_text", "1")  # as left by a version whose stems split a verb's aspects
    # ...whose category model was trained on what those stems read (its digest, where it has one, differs).
    path = tmp_path / "models" / "category.npz"
    old = CategoryModel.load(path)
    assert old is not None and old.info.get("data")
    replace(old, info={k: v for k, v in old.info.items() if k != "data"}).save(path)
    index_before = engine.store.get_meta("index_version")
    models_before = engine.store.get_meta("models_version")

    assert engine.sync() == 0
    assert embedder.texts == []  # nothing embedded again...
    assert engine.store.get_meta("lexical_text") == LEXICAL_VERSION
    assert engine.store.get_meta("index_version") != index_before  # ...but the lexical index is new
    assert engine.store.get_meta("models_version") != models_before  # and the category model refitted
    versions = (engine.store.get_meta("index_version"), engine.store.get_meta("models_version"))
    engine.sync()
    assert (engine.store.get_meta("index_version"), engine.store.get_meta("models_version")) == versions  # once


def test_changed_answer_is_updated_and_reembedded_alone(tmp_path: Path) -> None:
    make_engine(tmp_path).import_entries(ENTRIES)
    embedder = CountingEmbedder()
    engine = make_engine(tmp_path, embedder)
    new_answer = "Вытащите бумагу через переднюю панель и позвоните по телефону 1234."
    changed = [e.model_copy(update={"answer": new_answer}) if e.id == "print-jam" else e for e in ENTRIES]

    report = engine.import_entries(changed)
    assert (report.imported, report.updated, report.unchanged) == (0, 1, 11)
    assert len(embedder.texts) == 2
    assert all("зажевал" in t for t in embedder.texts)
    assert engine.sync() == 0

    hits, _ = engine.search("Принтер зажевал бумагу")
    assert hits[0].entry_id == "print-jam"
    assert hits[0].answer == new_answer
    assert BY_ID["print-jam"].answer not in {h.answer for h in engine.search("принтер бумага", top_k=20)[0]}


def test_prune_source_removes_absent_entries_of_that_source_only(engine: Engine) -> None:
    portal = KBEntry(
        id="portal-1",
        question="Как заказать новый ноутбук",
        answer="Оформите заявку в каталоге.",
        categories=("Оборудование",),
        source="portal",
    )
    engine.import_entries([portal])
    assert "print-jam" in ids(engine, "Принтер зажевал бумагу")

    kept = [e for e in ENTRIES if e.id != "print-jam"]
    report = engine.import_entries(kept, prune_source=SOURCE)
    assert (report.removed, report.unchanged) == (1, 11)

    for query in ("Принтер зажевал бумагу", "замятие бумаги в принтере"):
        hits, _ = engine.search(query, top_k=20)
        assert "print-jam" not in {h.entry_id for h in hits}
        assert BY_ID["print-jam"].answer not in {h.answer for h in hits}
    assert ids(engine, "заказать ноутбук")[0] == "portal-1"  # another source is left alone
    stats = engine.stats()
    assert stats["entries"] == 12
    assert stats["sources"] == {SOURCE: 11, "portal": 1}
    assert stats["vectors"]["q"] == stats["vectors"]["qa"] == 12


def test_pruning_every_entry_leaves_an_empty_knowledge_base(engine: Engine) -> None:
    report = engine.import_entries([], prune_source=SOURCE)
    assert report.removed == 12
    with pytest.raises(EmptyIndexError):
        engine.ask("принтер не печатает")
    assert engine.stats()["vectors"]["q"] == 0
    engine.import_entries(ENTRIES[:3])
    assert ids(engine, "Не подключается VPN, ошибка 809")[0] == "vpn-809"


# -- learning --------------------------------------------------------------------------------------
LEARN_QUERY = "не пускает в систему после отпуска"
PARAPHRASE = "после отпуска система не пускает"


def test_confirmed_request_raises_its_answer_for_a_paraphrase_and_persists(tmp_path: Path) -> None:
    # 512 buckets: in 256 "после" and "висят" share one, and that collision alone put print-queue first.
    engine = make_engine(tmp_path, HashingEmbedder(512))
    engine.import_entries(ENTRIES)
    target = BY_ID["pwd-locked"].answer_id
    assert rank_of(engine, PARAPHRASE, target) != 0
    assert rank_of(engine, LEARN_QUERY, target) != 0
    unrelated_before = ids(engine, "Принтер зажевал бумагу")

    assert engine.learn(LEARN_QUERY, "pwd-locked", positive=True, origin="test") is True
    assert engine.learn(LEARN_QUERY, "pwd-locked", positive=True) is False  # already recorded

    hits, prediction = engine.search(PARAPHRASE)
    assert hits[0].answer_id == target
    assert "learned" in hits[0].signals
    assert prediction.levels[0] == ACCOUNTS
    assert ids(engine, "Принтер зажевал бумагу") == unrelated_before

    reopened = make_engine(tmp_path, HashingEmbedder(512))
    assert reopened.search(PARAPHRASE)[0][0].answer_id == target
    assert reopened.stats()["learned"] == {"confirmed": 1, "rejected": 0}


def test_rejected_request_lowers_its_answer_for_similar_requests(engine: Engine) -> None:
    query, paraphrase = "Outlook не отправляет письма", "не отправляются письма из Outlook"
    before, _ = engine.search(paraphrase, top_k=20)
    wrong = before[0]
    assert wrong.entry_id == "mail-signature"

    engine.learn(query, wrong.entry_id, positive=False)

    after, _ = engine.search(paraphrase, top_k=20)
    assert after[0].answer_id != wrong.answer_id
    lowered = next(h for h in after if h.answer_id == wrong.answer_id)
    assert lowered.score < wrong.score
    assert "rejected" in lowered.signals
    assert engine.stats()["learned"] == {"confirmed": 0, "rejected": 1}


def test_learn_masks_personal_data_in_the_stored_request(engine: Engine) -> None:
    engine.learn("Принтер зажевал бумагу, звоните +7 912 345-67-89 или ivanova@example.ru", "print-jam", positive=True)
    (pair,) = engine.store.learned()
    assert "912" not in pair.query and "ivanova" not in pair.query
    assert "[phone]" in pair.query and "[email]" in pair.query


def test_learn_with_an_unknown_entry_raises(engine: Engine) -> None:
    with pytest.raises(RagError, match="unknown knowledge-base entry 'no-such-entry'"):
        engine.learn("принтер", "no-such-entry", positive=True)
    assert engine.stats()["learned"] == {"confirmed": 0, "rejected": 0}


# -- deciding and composing ------------------------------------------------------------------------
def test_ask_on_an_empty_knowledge_base_raises(tmp_path: Path) -> None:
    engine = make_engine(tmp_path)
    with pytest.raises(EmptyIndexError, match="kb import"):
        engine.ask("принтер не печатает")
    with pytest.raises(EmptyIndexError):
        engine.search("принтер не печатает")


def test_an_entry_switched_off_is_never_among_the_hits_of_ask(engine: Engine) -> None:
    query = "Добрый день! Принтер не печатает, документы висят в очереди"
    assert engine.ask(query, compose=False, policy=DecisionPolicy(0.0)).hits[0].entry_id == "print-queue"
    result = engine.ask(query, compose=False, policy=DecisionPolicy(0.0, disabled_entries=frozenset({"print-queue"})))
    assert result.hits and "print-queue" not in [h.entry_id for h in result.hits]
    assert result.decision == "answer"  # with the next entry


def test_ask_abstains_below_the_threshold_without_calling_the_llm(tmp_path: Path) -> None:
    llm = ScriptedLLM(["Перезапустите диспетчер печати [1]."])
    engine = Engine(EngineConfig(data_dir=tmp_path, policy=DecisionPolicy(threshold=0.99)), HashingEmbedder(), llm=llm)
    engine.import_entries(ENTRIES)

    result = engine.ask("принтер не печатает, документы висят в очереди", compose=True)
    assert result.decision == "abstain"
    assert result.threshold == 0.99
    assert "below the threshold 0.99" in result.reason
    assert result.hits[0].entry_id == "print-queue"
    assert result.composed is None
    assert llm.calls == []


def test_ask_answers_above_the_threshold_with_the_extractive_answer_without_llm(engine: Engine) -> None:
    result = engine.ask("Добрый день! Принтер не печатает, документы висят в очереди", policy=DecisionPolicy(0.0))
    assert result.decision == "answer"
    assert result.reason == ""
    assert result.language == "ru"
    assert result.category.levels[0] == PRINT
    composed = result.composed
    assert composed is not None
    assert composed.mode == "extractive"
    assert composed.fallback_reason == "no LLM configured"
    assert composed.text.startswith("Возможно, вам поможет:")
    assert BY_ID["print-queue"].answer in composed.text
    assert composed.citations == [1, 2, 3]
    assert engine.ask("принтер не печатает", compose=False).composed is None


def test_ask_composes_with_the_llm_when_it_answers(tmp_path: Path) -> None:
    reply = "Очистите очередь печати и перезапустите службу Spooler [1]."
    llm = ScriptedLLM([reply])
    engine = Engine(EngineConfig(data_dir=tmp_path, policy=DecisionPolicy(threshold=0.0)), HashingEmbedder(), llm=llm)
    engine.import_entries(ENTRIES)

    result = engine.ask("Принтер не печатает, документы висят в очереди")
    assert result.decision == "answer"
    assert result.composed is not None
    assert (result.composed.mode, result.composed.text, result.composed.citations) == ("llm", reply, [1])
    (messages,) = llm.calls
    prompt = "\n".join(m["content"] for m in messages)
    assert "очистите очередь печати" in prompt.lower()
    assert engine.stats()["llm"] == "scripted"


def test_category_thresholds_and_disabled_categories(tmp_path: Path) -> None:
    llm = ScriptedLLM(["Перезапустите FortiClient [1]."])
    engine = Engine(
        EngineConfig(data_dir=tmp_path, policy=DecisionPolicy(
            threshold=0.0, category_thresholds={PRINT: 0.99}, disabled_categories=frozenset([MAIL]))),
        HashingEmbedder(),
        llm=llm,
    )
    engine.import_entries(ENTRIES)

    printer = engine.ask("Принтер не печатает, документы висят в очереди")
    assert (printer.decision, printer.threshold) == ("abstain", 0.99)
    assert "below the threshold 0.99" in printer.reason

    mail = engine.ask("Outlook пишет, что почтовый ящик переполнен")
    assert mail.category.levels[0] == MAIL
    assert mail.decision == "abstain"
    assert "switched off" in mail.reason
    assert mail.hits[0].entry_id == "mail-full"
    assert llm.calls == []

    vpn = engine.ask("Не подключается VPN, ошибка 809")
    assert (vpn.decision, vpn.threshold) == ("answer", 0.0)
    assert vpn.composed is not None and vpn.composed.mode == "llm"
    assert len(llm.calls) == 1
    # An explicit category overrides the predicted one for the threshold.
    assert engine.ask("Не подключается VPN, ошибка 809", category=PRINT, compose=False).decision == "abstain"


# -- stats and index consistency -------------------------------------------------------------------
def test_stats_counts(engine: Engine) -> None:
    engine.learn("принтер жуёт бумагу", "print-jam", positive=True)
    engine.learn("Outlook не отправляет письма", "mail-signature", positive=False)
    stats = engine.stats()
    assert stats["entries"] == 12
    assert stats["distinct_answers"] == 11
    assert stats["sources"] == {SOURCE: 12}
    assert stats["categories_level1"] == {VPN: 3, ACCOUNTS: 3, PRINT: 3, MAIL: 3}
    assert stats["learned"] == {"confirmed": 1, "rejected": 1}
    assert stats["vectors"] == {"q": 12, "qa": 12, "learned": 2}
    assert stats["embedding_model"] == stats["index_built_with"] == "hashing:256"
    assert stats["embedding_fallback"] is None
    assert stats["llm"] is None


def test_index_built_with_another_model_is_refused_until_reindex(tmp_path: Path) -> None:
    old = make_engine(tmp_path, HashingEmbedder(128))
    old.import_entries(ENTRIES)
    old.learn("принтер жуёт бумагу", "print-jam", positive=True)

    new = make_engine(tmp_path, HashingEmbedder(256))
    with pytest.raises(IndexMismatchError, match=r"helpdesk-assist kb reindex") as info:
        new.search("принтер не печатает")
    assert "hashing:128" in str(info.value) and "hashing:256" in str(info.value)
    with pytest.raises(IndexMismatchError):
        new.import_entries(ENTRIES)

    assert new.reindex() == 12
    assert new.search("Принтер зажевал бумагу")[0][0].entry_id == "print-jam"
    stats = new.stats()
    assert stats["index_built_with"] == "hashing:256"
    assert stats["vectors"] == {"q": 12, "qa": 12, "learned": 1}  # learned pairs re-embedded too
    with pytest.raises(IndexMismatchError):
        make_engine(tmp_path, HashingEmbedder(128)).search("принтер")


def test_running_engine_survives_a_reindex_by_another_engine(engine: Engine, tmp_path: Path) -> None:
    assert ids(engine, "Принтер зажевал бумагу")[0] == "print-jam"
    make_engine(tmp_path).reindex()  # what `helpdesk-assist kb reindex` does beside the running service
    assert ids(engine, "Принтер зажевал бумагу")[0] == "print-jam"
