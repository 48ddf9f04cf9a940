"""Issue 8 item 10: a link clicked after the ticket was closed records nothing, and the page says so.

OutcomeService over the real state store and confirmation pages, with the in-memory helpdesk: the
ticket's state is asked on GET through a short cache (cheap, changes nothing, unknown counts as open)
and afresh on the POST that would record (unknown records nothing and asks to try again)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest
from flask import Flask

from connectors.base import TicketState, TicketStateReader, TransientConnectorError
from plugin.service.links import LinkSigner
from plugin.service.outcomes import OutcomeService
from plugin.service.tickets import APPLY_OUTCOME, Pipeline
from plugin.settings import load_settings
from plugin.store import Store
from plugin.store.suggestions import EntryRef, Suggestion, Suggestions
from plugin.web.confirm import confirm_bp
from plugin.web.context import EXTENSION
from tests.plugin.fake_connector import FakeHelpdesk


@dataclass
class CountingHelpdesk(FakeHelpdesk, TicketStateReader):
    """The in-memory helpdesk with a state-only read that counts calls and can be slow or down."""

    state_reads: int = 0
    down: bool = False
    delay_s: float = 0.0
    release: threading.Event = field(default_factory=threading.Event)

    def ticket_state(self, ticket_id: str) -> TicketState:
        self.state_reads += 1
        if self.delay_s:
            self.release.wait(self.delay_s)
        if self.down:
            raise TransientConnectorError("helpdesk unreachable (simulated)")
        return self.get_ticket(ticket_id).state


@dataclass
class Env:
    helpdesk: CountingHelpdesk
    pipeline: Pipeline
    backend: OutcomeService
    links: LinkSigner
    client: object
    store: Store
    records: Suggestions

    def suggest(self) -> Suggestion:
        t = self.helpdesk.add_ticket("Забыл пароль", "Как сбросить пароль?")
        s = Suggestion(
            id=f"s{t.id}", source="fake", ticket_id=t.id, created_at=time.time(), mode="public", language="ru",
            ticket_title="Забыл пароль", answer_text="Сбросьте пароль на портале [1].",
            entries=[EntryRef(entry_id="e1", answer_id="a1", title="Сброс пароля", answer="На портале.")],
        )
        return self.records.create(s)

    def path(self, s: Suggestion, action: str = "solved") -> str:
        return self.links.url(s.id, action).removeprefix("http://localhost")  # type: ignore[arg-type]

    def queued_outcomes(self) -> int:
        return sum(1 for i in self.store.inbox.items(limit=100) if i.kind == APPLY_OUTCOME)


@pytest.fixture
def env(tmp_path) -> Env:
    settings = load_settings(env={}, secret_key="s" * 32)
    store = Store.open(tmp_path / "state.sqlite3")
    records = store.suggestions
    links = LinkSigner(settings.secret_key.get_secret_value(), 3600, "http://localhost")
    helpdesk = CountingHelpdesk()
    pipeline = Pipeline(settings, None, store, {"fake": helpdesk}, links)  # type: ignore[arg-type]
    backend = OutcomeService(pipeline)
    backend.GET_WAIT_S = 0.5

    @dataclass
    class Services:
        links: LinkSigner
        outcomes: OutcomeService

    app = Flask(__name__)
    app.extensions[EXTENSION] = Services(links, backend)
    app.register_blueprint(confirm_bp)
    return Env(helpdesk, pipeline, backend, links, app.test_client(), store, records)


def test_click_after_an_agent_closed_the_ticket_records_nothing(env: Env) -> None:
    s = env.suggest()
    env.helpdesk.tickets[s.ticket_id].state = "closed"  # the agent closed it

    page = env.client.get(env.path(s))
    assert page.status_code == 200
    assert "Обращение уже закрыто" in page.get_data(as_text=True) and "<form" not in page.get_data(as_text=True)

    r = env.client.post(env.path(s))
    assert r.status_code == 409 and "Обращение уже закрыто" in r.get_data(as_text=True)
    assert env.records.get(s.id).outcome is None  # nothing recorded ...
    assert env.queued_outcomes() == 0  # ... so nothing is applied nor learned


def test_a_ticket_closed_between_the_page_and_the_click_is_asked_again(env: Env) -> None:
    s = env.suggest()
    assert "<form" in env.client.get(env.path(s)).get_data(as_text=True)
    env.helpdesk.tickets[s.ticket_id].state = "closed"  # closed while the page was open (the GET's state is cached)

    assert "<form" in env.client.get(env.path(s)).get_data(as_text=True)
    assert env.client.post(env.path(s)).status_code == 409
    assert env.records.get(s.id).outcome is None


def test_an_open_ticket_takes_the_click(env: Env) -> None:
    s = env.suggest()
    assert env.client.post(env.path(s, "not_solved"), data={"reason": "not_enough"}).status_code == 200
    assert env.records.get(s.id).outcome == "not_solved"
    assert env.queued_outcomes() == 1
    # The outcome stands; a later close does not hide it, and the page no longer asks the helpdesk.
    env.helpdesk.tickets[s.ticket_id].state = "closed"
    reads = env.helpdesk.state_reads
    assert "уже сообщили" in env.client.get(env.path(s)).get_data(as_text=True)
    assert env.helpdesk.state_reads == reads


def test_get_is_cheap_many_opens_one_read(env: Env) -> None:
    s = env.suggest()
    for _ in range(10):  # a mail gateway and a link scanner, opening and re-opening
        assert env.client.get(env.path(s)).status_code == 200
    assert env.helpdesk.state_reads == 1
    assert env.records.get(s.id).outcome is None


def test_helpdesk_down_get_shows_the_form_post_records_nothing_then_works_when_back(env: Env) -> None:
    s = env.suggest()
    env.helpdesk.down = True

    page = env.client.get(env.path(s))
    assert page.status_code == 200 and "<form" in page.get_data(as_text=True)  # never a 500
    r = env.client.post(env.path(s))
    assert r.status_code == 503 and "Попробуйте ещё раз" in r.get_data(as_text=True)
    assert env.records.get(s.id).outcome is None and env.queued_outcomes() == 0

    env.helpdesk.down = False
    assert env.client.post(env.path(s)).status_code == 200
    assert env.records.get(s.id).outcome == "solved"


def test_a_slow_helpdesk_does_not_hold_the_page(env: Env) -> None:
    s = env.suggest()
    env.helpdesk.delay_s = 30.0
    try:
        started = time.monotonic()
        page = env.client.get(env.path(s))
        waited = time.monotonic() - started
        assert page.status_code == 200 and "<form" in page.get_data(as_text=True)
        assert waited < 5.0, waited  # GET_WAIT_S is 0.5 s here; the read goes on in the background
        env.client.get(env.path(s))
        assert env.helpdesk.state_reads == 1  # still one request in flight for this ticket
    finally:
        env.helpdesk.release.set()


def test_a_deleted_ticket_counts_as_closed(env: Env) -> None:
    s = env.suggest()
    del env.helpdesk.tickets[s.ticket_id]

    assert env.client.post(env.path(s)).status_code == 409
    assert env.records.get(s.id).outcome is None
