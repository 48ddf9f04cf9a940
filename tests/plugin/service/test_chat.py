"""The chat service on the real engine and the sample knowledge base: follow-ups, "не помогло", the
clarifying question, ratings as outcomes (learned by the worker), owners, limits, and the hand-off
through the inbox with a recording TicketCreator (the real helpdesks: tests/integration/test_chat_*)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from connectors.base import NewTicket, Person, Ticket, TicketCreator, TransientConnectorError
from plugin.jobs.worker import Worker
from plugin.service.chat import (
    CHAT_HANDOFF,
    ChatError,
    ChatLimiter,
    ChatService,
    ConversationFull,
    ConversationNotFound,
    RequesterNotFound,
    marker_for,
)
from plugin.service.links import LinkSigner
from plugin.service.tickets import Pipeline
from plugin.settings import load_settings
from plugin.store import Store
from tests.rag import sample_engine as _sample

sample_engine = _sample.sample_engine
pytestmark = pytest.mark.slow

ALICE, BOB = "c:alice-cookie-id", "c:bob-cookie-id"


class RecordingCreator(TicketCreator):
    """A helpdesk in memory: one account, tickets found again by their marker; can be 'down'."""

    name = "memdesk"

    def __init__(self) -> None:
        self.people = {"ivanov": Person(id="7", name="Иван Иванов", login="ivanov", email="ivanov@corp.example")}
        self.created: list[NewTicket] = []
        self.down = False

    def find_requester(self, login_or_email: str) -> Person | None:
        if self.down:
            raise TransientConnectorError("helpdesk unreachable")
        return next((p for p in self.people.values()
                     if login_or_email.lower() in (p.login, (p.email or "").lower())), None)

    def find_created(self, new: NewTicket) -> Ticket | None:
        for i, t in enumerate(self.created, start=1):
            if t.marker == new.marker:
                return Ticket(source="memdesk", id=str(i), subject=t.subject, state="new", url=f"http://desk/{i}")
        return None

    def create_ticket(self, new: NewTicket) -> Ticket:
        if self.down:
            raise TransientConnectorError("helpdesk unreachable")
        found = self.find_created(new)
        if found:
            return found
        self.created.append(new)
        n = len(self.created)
        return Ticket(source="memdesk", id=str(n), subject=new.subject, state="new", url=f"http://desk/{n}")


@pytest.fixture
def chat(tmp_path: Path, sample_engine: Any) -> ChatService:
    settings = load_settings(env={}, data_dir=str(tmp_path), chat={"max_turns": 6, "messages_per_minute": 3})
    store = Store.open(tmp_path / "state.sqlite3")
    pipeline = Pipeline(settings, sample_engine, store, {}, LinkSigner("s" * 32, 86_400, "http://x"))
    service = ChatService(settings, sample_engine, store, pipeline, RecordingCreator())
    pipeline.appliers["chat"] = service.apply_outcome
    pipeline.open_checks["chat"] = service.conversation_open
    return service


def drain(chat: ChatService) -> Worker:
    handlers = dict(chat.pipeline.handlers())
    handlers.update(chat.handlers())
    worker = Worker(chat.store, handlers, backoff_base_s=0.01, backoff_max_s=0.01)
    while worker.run_once():
        pass
    return worker


def test_a_followup_is_answered_in_the_context_of_the_conversation(chat: ChatService) -> None:
    conv = chat.start(ALICE, "Как подключить принтер, который стоит у меня в кабинете?")
    [first] = conv.turns
    assert first.reply == "answer" and first.sources[0].title == "Как подключить принтер"
    assert first.answer_text and first.suggestion_id
    conv = chat.send(ALICE, conv.id, "а если у меня убунту?")
    second = conv.turns[1]
    assert (second.reply, second.kind, second.method) == ("answer", "follow_up", "context")
    assert second.sources[0].title == "Принтер под Linux"
    # Each answer is a suggestion with source "chat", one per turn.
    s = chat.store.suggestions.get(second.suggestion_id or "")
    assert s is not None and (s.source, s.ticket_id, s.outcome) == ("chat", f"{conv.id}:2", None)
    # A source is its title and answer: the entry's question (another employee's words) is not kept.
    assert set(second.sources[0].model_dump()) == {"title", "answer"}


def test_not_helped_never_gives_the_same_answer_again(chat: ChatService) -> None:
    conv = chat.start(ALICE, "Отправляю на печать, документ висит в очереди и ничего не печатается")
    conv = chat.send(ALICE, conv.id, "не помогло")
    conv = chat.send(ALICE, conv.id, "всё равно не печатает")
    given = [t.answer_ids[0] for t in conv.turns if t.reply == "answer"]
    assert len(given) == 3 and len(set(given)) == 3
    assert [t.rejected for t in conv.turns] == [True, True, False]
    # "не помогло" is a rejection of the answer before it: an outcome with channel "chat".
    first = chat.store.suggestions.get(conv.turns[0].suggestion_id or "")
    assert first is not None and (first.outcome, first.outcome_via) == ("not_solved", "chat")


def test_an_ambiguous_message_gets_a_question_and_a_button_answers_it(chat: ChatService) -> None:
    conv = chat.start(ALICE, "не подключается")
    [question] = conv.turns
    assert question.reply == "clarify" and question.clarification is not None
    labels = [o["label"] for o in question.clarification["options"]]
    assert "Удаленный рабочий стол" in labels and question.answer_text.startswith("Уточните")
    assert conv.clarify_rounds == 1
    conv = chat.choose(ALICE, conv.id, labels.index("Удаленный рабочий стол") + 1)
    answer = conv.turns[1]
    assert answer.reply == "answer" and answer.sources[0].title == "Удаленный рабочий стол не подключается"
    with pytest.raises(ChatError) as e:
        chat.choose(ALICE, conv.id, 1)  # no question pending any more
    assert e.value.field == "option"


def test_a_typed_reply_picks_an_option(chat: ChatService) -> None:
    conv = chat.start(ALICE, "не подключается")
    conv = chat.send(ALICE, conv.id, "удаленный рабочий стол")
    assert conv.turns[1].kind == "clarified"
    assert conv.turns[1].sources[0].title == "Удаленный рабочий стол не подключается"


def test_a_rating_is_an_outcome_learned_by_the_worker(chat: ChatService) -> None:
    conv = chat.start(ALICE, "Как подключить принтер, который стоит у меня в кабинете?")
    before = chat.engine.store.learned_counts()
    result = chat.rate(ALICE, conv.id, 1, True)
    assert (result.outcome, result.first_time) == ("solved", True)
    again = chat.rate(ALICE, conv.id, 1, False, reason="not_related")
    assert (again.outcome, again.first_time) == ("solved", False)  # the first answer stands
    s = chat.store.suggestions.get(conv.turns[0].suggestion_id or "")
    assert s is not None and [e.kind for e in chat.store.suggestions.events(s.id)] == ["suggested", "confirmed"]
    drain(chat)
    s = chat.store.suggestions.get(s.id)
    assert s is not None and s.outcome_applied_at is not None
    assert chat.engine.store.learned_counts() != before  # the confirmed pair is learned
    assert chat.conversations(ALICE)[0]["outcome"] == "helpful"


def test_rating_input_is_checked(chat: ChatService) -> None:
    conv = chat.start(ALICE, "Как подключить принтер, который стоит у меня в кабинете?")
    for kwargs, field in (({"n": 9, "helpful": True}, "turn"), ({"n": "x", "helpful": True}, "turn"),
                          ({"n": 1, "helpful": "yes"}, "helpful"),
                          ({"n": 1, "helpful": False, "reason": "bored"}, "reason"),
                          ({"n": 1, "helpful": False, "comment": "x" * 3000}, "comment")):
        with pytest.raises(ChatError) as e:
            chat.rate(ALICE, conv.id, kwargs.pop("n"), kwargs.pop("helpful"), **kwargs)
        assert e.value.field == field
    chat.rate(ALICE, conv.id, 1, False, reason="not_enough", comment="  мало  ")
    s = chat.store.suggestions.get(conv.turns[0].suggestion_id or "")
    assert s is not None and (s.outcome, s.outcome_reason, s.outcome_comment) == ("not_solved", "not_enough", "мало")


def test_another_owner_sees_nothing(chat: ChatService) -> None:
    conv = chat.start(ALICE, "Как настроить рабочую почту на андроиде?")
    for call in (lambda: chat.get(BOB, conv.id), lambda: chat.send(BOB, conv.id, "а на айфоне?"),
                 lambda: chat.rate(BOB, conv.id, 1, True), lambda: chat.handoff(BOB, conv.id, login_or_email="ivanov"),
                 lambda: chat.get(ALICE, "no-such-id"), lambda: chat.get(ALICE, "x" * 500)):
        with pytest.raises(ConversationNotFound):
            call()
    assert chat.conversations(BOB) == []
    [mine] = chat.conversations(ALICE)
    assert (mine["id"], mine["title"], mine["turns"]) == (conv.id, "Как настроить рабочую почту на андроиде?", 1)
    assert len(conv.id) >= 22  # token_urlsafe(16)


def test_inputs_and_turns_are_bounded(chat: ChatService) -> None:
    for bad in ("", "   ", None, "x" * 1001, "a\x00b"):
        with pytest.raises(ChatError) as e:
            chat.start(ALICE, bad)
        assert e.value.field == "text"
    conv = chat.start(ALICE, "Как подключить принтер, который стоит у меня в кабинете?")
    for _ in range(5):
        conv = chat.send(ALICE, conv.id, "спасибо, а ещё вопрос про принтер")
    with pytest.raises(ConversationFull):
        chat.send(ALICE, conv.id, "и ещё")


def test_rate_limits_per_identity_and_per_address() -> None:
    now = [1000.0]
    limiter = ChatLimiter(per_identity=2, per_ip=3, clock=lambda: now[0])
    assert [limiter.hit("a", "10.0.0.1") for _ in range(2)] == [0.0, 0.0]
    assert limiter.hit("a", "10.0.0.1") == pytest.approx(20.0)  # the window ends at 1020
    assert limiter.hit("b", "10.0.0.1") == 0.0
    assert limiter.hit("c", "10.0.0.1") > 0  # the address is spent (3), whoever asks
    assert limiter.hit("c", "10.0.0.2") == 0.0
    now[0] = 1021.0
    assert limiter.hit("a", "10.0.0.1") == 0.0


def test_handoff_creates_the_ticket_through_the_inbox(chat: ChatService) -> None:
    creator = chat.creator
    assert isinstance(creator, RecordingCreator)
    conv = chat.start(ALICE, "Отправляю на печать, документ висит в очереди и ничего не печатается")
    conv = chat.send(ALICE, conv.id, "не помогло")
    with pytest.raises(RequesterNotFound):
        chat.handoff(ALICE, conv.id, login_or_email="nobody")
    with pytest.raises(ChatError) as e:
        chat.handoff(ALICE, conv.id, login_or_email="two words")
    assert e.value.field == "login"
    conv = chat.handoff(ALICE, conv.id, login_or_email="Ivanov@corp.example")
    assert conv.handoff_state == "pending" and not creator.created
    assert chat.handoff(ALICE, conv.id, login_or_email="ivanov").handoff_state == "pending"  # once
    assert len([i for i in chat.store.inbox.items("pending") if i.kind == CHAT_HANDOFF]) == 1
    drain(chat)
    conv = chat.get(ALICE, conv.id)
    assert (conv.handoff_state, conv.ticket_id, conv.ticket_url) == ("created", "1", "http://desk/1")
    [ticket] = creator.created
    assert ticket.requester.login == "ivanov" and ticket.marker == marker_for(conv.id)
    assert ticket.subject == "Отправляю на печать, документ висит в очереди и ничего не печатается"
    assert "Сотрудник: не помогло" in ticket.body and "Оценка: не помогло" in ticket.body
    assert conv.turns[0].answer_text.splitlines()[0] in ticket.body
    assert chat.conversations(ALICE)[0]["outcome"] == "ticket"
    events = chat.store.suggestions.events(conv.turns[0].suggestion_id or "")
    assert "handed_off" in [e.kind for e in events]


def test_handoff_while_the_helpdesk_is_down_waits_and_loses_nothing(chat: ChatService) -> None:
    creator = chat.creator
    assert isinstance(creator, RecordingCreator)
    creator.down = True
    conv = chat.start(ALICE, "Как подключить принтер, который стоит у меня в кабинете?")
    conv = chat.handoff(ALICE, conv.id, login_or_email="ivanov")  # not checked now: the worker will
    assert conv.handoff_state == "pending"
    drain(chat)
    assert chat.get(ALICE, conv.id).handoff_state == "pending" and not creator.created
    [item] = [i for i in chat.store.inbox.items("pending") if i.kind == CHAT_HANDOFF]
    assert item.attempts == 1 and "unreachable" in (item.last_error or "")
    creator.down = False
    time.sleep(0.05)  # the retry's backoff (0.01 s here)
    drain(chat)
    conv = chat.get(ALICE, conv.id)
    assert conv.handoff_state == "created" and len(creator.created) == 1


def test_send_me_a_link_mails_a_signed_link_that_restores_the_conversations(tmp_path: Path, sample_engine: Any) -> None:
    sent: list[tuple[Any, list[str]]] = []
    settings = load_settings(env={}, data_dir=str(tmp_path), links={"public_url": "https://assist.example"},
                             email={"address": "assist@corp.example", "allowed_domains": ["corp.example"]})
    store = Store.open(tmp_path / "state.sqlite3")
    pipeline = Pipeline(settings, sample_engine, store, {}, LinkSigner("s" * 32, 86_400, "http://x"))
    chat = ChatService(settings, sample_engine, store, pipeline, None, mailer=lambda msg, to: sent.append((msg, to)))
    me, _cookie = chat.identities.new_cookie()
    for bad in ("not-an-address", "a b@corp.example", 5):
        with pytest.raises(ChatError) as e:
            chat.request_link(me, bad, language="ru")
        assert e.value.field == "email"
    assert chat.request_link(me, "someone@elsewhere.example", language="ru") is False  # outside allowed_domains
    assert chat.request_link(me, "ivanov@corp.example", language="ru") is True
    drain(chat)
    [(msg, to)] = sent
    assert to == ["ivanov@corp.example"] and msg["Auto-Submitted"] == "auto-generated"
    assert msg["Subject"] == "Ваши разговоры с помощником ИТ-поддержки"
    url = next(line for line in msg.get_content().splitlines() if line.startswith("https://"))
    assert url.startswith("https://assist.example/chat/restore/")
    restored = chat.identities.from_restore(url.rsplit("/", 1)[1])
    assert restored is not None and restored.owner == me.owner
    assert chat.identities.from_restore(url.rsplit("/", 1)[1][:-2] + "xx") is None  # tampered


def test_with_an_llm_the_extractive_answer_comes_first_and_the_checked_llm_answer_replaces_it(
        chat: ChatService) -> None:
    from tests.rag.llm.fakes import ScriptedLLM

    def slow_answer(_messages: Any) -> str:
        time.sleep(0.3)
        return "Откройте «Параметры → Принтеры и сканеры» и добавьте принтер кабинета [1]."

    llm = ScriptedLLM([slow_answer, "Позвоните по телефону +7 999 123-45-67 [1]."])
    engine = chat.engine
    engine.llm = llm
    try:
        conv = chat.start(ALICE, "Как подключить принтер, который стоит у меня в кабинете?")
        first = conv.turns[0]
        assert (first.reply, first.answer_mode) == ("answer", "pending")
        assert first.answer_text.startswith("Возможно, вам поможет")  # the extractive answer, at once
        chat.wait_compositions(30)
        first = chat.get(ALICE, conv.id).turns[0]
        assert (first.answer_mode, first.answer_text) == (
            "llm", "Откройте «Параметры → Принтеры и сканеры» и добавьте принтер кабинета [1].")
        # An answer that fails the checks (a phone number the entries do not give) is never shown.
        conv = chat.start(ALICE, "Отправляю на печать, документ висит в очереди и ничего не печатается")
        chat.wait_compositions(30)
        turn = chat.get(ALICE, conv.id).turns[0]
        assert turn.answer_mode.startswith("extractive: ") and "999" not in turn.answer_text
    finally:
        engine.llm = None


def test_an_entry_the_admin_switched_off_is_never_shown_in_the_chat(tmp_path: Path, sample_engine: Any) -> None:
    from plugin.service.policy import Policies

    settings = load_settings(env={}, data_dir=str(tmp_path))
    store = Store.open(tmp_path / "state.sqlite3")
    off: set[str] = set()
    policies = Policies(settings, overrides=lambda: {"disabled_entries": sorted(off)})
    pipeline = Pipeline(settings, sample_engine, store, {}, LinkSigner("s" * 32, 86_400, "http://x"), policies=policies)
    service = ChatService(settings, sample_engine, store, pipeline, RecordingCreator())
    question = "Как подключить принтер, который стоит у меня в кабинете?"
    [first] = service.start(ALICE, question).turns
    assert first.reply == "answer" and first.sources[0].title == "Как подключить принтер"
    off.add(first.entry_ids[0])
    [again] = service.start(ALICE, question).turns
    assert first.entry_ids[0] not in again.entry_ids
    assert all(s.title != "Как подключить принтер" for s in again.sources)


def test_a_chat_question_of_an_open_outage_gets_its_message_and_counts_towards_the_burst(
        tmp_path: Path, sample_engine: Any) -> None:
    from plugin.service.outages import OutageWatch
    from plugin.settings import OutageSettings
    from plugin.wiring import outage_features

    settings = load_settings(env={}, data_dir=str(tmp_path))
    store = Store.open(tmp_path / "state.sqlite3")
    watch = OutageWatch(store, OutageSettings(enabled=True, min_requests=3), lambda: outage_features(sample_engine),
                        clock=time.time)
    pipeline = Pipeline(settings, sample_engine, store, {}, LinkSigner("s" * 32, 86_400, "http://x"), outages=watch)
    service = ChatService(settings, sample_engine, store, pipeline, RecordingCreator())
    people = [f"c:person-{i}" for i in range(5)]
    said = ["Не работает почта, Outlook не подключается к серверу", "не работает почта, аутлук не подключается",
            "Почта не работает! Outlook не может подключиться к серверу", "у меня тоже не работает почта в outlook"]
    turns = [service.start(who, text).turns[0] for who, text in zip(people, said, strict=False)]
    open_incidents = store.incidents.find(status="open")
    assert len(open_incidents) == 1, [t.reply for t in turns]
    # Those before the incident opened were answered as usual; the one after gets the known-problem message.
    assert turns[-1].reply == "incident" and turns[-1].answer_text
    assert turns[-1].answer_text == watch.message(open_incidents[0].id, "ru")
    assert all(t.reply != "incident" for t in turns[:2])
    # An unrelated question is answered as usual.
    other = service.start(people[4], "Как подключить принтер, который стоит у меня в кабинете?").turns[0]
    assert other.reply == "answer"
    # The agents' view lists the chat requests as members of the incident.
    assert {m.channel for m in store.incidents.members(open_incidents[0].id)} == {"chat"}
