"""Issue 8 item 2 end to end: with a hostile OpenAI-compatible server behind the real engine (bundled USE
encoder, shipped sample KB), nothing the model invented reaches the public reply nor the agent's draft
in the private note, in normal and in shadow mode; the note says why the entries were used instead."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.base import TicketEvent
from plugin.i18n import words
from plugin.jobs.worker import Worker
from plugin.service.links import LinkSigner
from plugin.service.tickets import Pipeline
from plugin.settings import load_settings
from plugin.store import Store
from plugin.store.suggestions import Suggestions
from rag.engine import Engine
from rag.llm.openai_backend import OpenAILLM
from rag.models import answer_mode_words
from tests.drain import drain
from tests.plugin.fake_connector import FakeHelpdesk, Posted
from tests.rag.llm.hostile import HOSTILE, HostileLLMServer, serve_hostile_llm, ticket

pytestmark = pytest.mark.slow

BASE_URL = "https://ai.example.test"

#: Pieces of the hostile completions that must appear in nothing we post.
FOREIGN = (
    "evil",
    "xn--",
    "10.13.37.1",
    "185.220",
    "Welcome2024",
    "Qwerty123",
    "4831",
    "555-35-35",
    "123-45-76",
    "a8F3kQ9z",
    "7Hq2Lx9P",
    "P@ssw0rd",
    "@it_help",
    "examp1e",
    "Зарплаты",
    "C:\\Users",
    "/tmp/x",
    "password-reset.online",
    "catalog/access",
    "redirect?to",
    "ｅｖｉｌ",
    "pаssword",
    "79991234567",
)


@pytest.fixture(scope="module")
def hostile_llm() -> Iterator[HostileLLMServer]:
    with serve_hostile_llm() as server:
        yield server


@pytest.fixture(scope="module")
def engine(tmp_path_factory, use_embedder, hostile_llm) -> Engine:
    from dataset import SAMPLE_KB
    from dataset.importers import read_kb
    from plugin.service.engines import engine_config

    settings = load_settings(env={}, decision={"threshold": 0.0})
    eng = Engine(
        engine_config(settings, tmp_path_factory.mktemp("engine")),
        use_embedder,
        llm=OpenAILLM("hostile", base_url=hostile_llm.url),
        llm_options={"timeout_s": 10.0},
    )
    eng.import_entries(read_kb(SAMPLE_KB).entries)
    return eng


def _run(engine: Engine, tmp_path, names: list[str], **settings_over) -> tuple[FakeHelpdesk, Suggestions, dict[str, str]]:
    helpdesk = FakeHelpdesk()
    settings = load_settings(env={}, secret_key="s" * 32, **settings_over)
    store = Store.open(tmp_path / "state.sqlite3")
    records = store.suggestions
    links = LinkSigner(settings.secret_key.get_secret_value(), 3600, BASE_URL)
    pipeline = Pipeline(settings, engine, store, {"fake": helpdesk}, links)
    worker = Worker(store, pipeline.handlers(), lease_s=30, max_attempts=2, backoff_base_s=0.01, backoff_max_s=0.02)
    ids = {}
    for name in names:
        t = helpdesk.add_ticket("Забыл пароль", ticket(name))
        ids[name] = t.id
        pipeline.enqueue_event(TicketEvent(source="fake", ticket_id=t.id, kind="created", delivery_key=f"k:{t.id}"))
    drain(worker, 120.0)
    return helpdesk, records, ids


def _readable(p: Posted) -> str:
    """What a person reads in a posted comment: everything but the random parts we generate ourselves (the
    marker's hex digits and the signed links' tokens), which may hold "4831" or "555" by chance."""
    m = p.message
    text = p.text().replace(m.marker, "")
    for link in m.links:
        if link.url.startswith(BASE_URL + "/"):
            text = text.replace(link.url, BASE_URL)
    return text


@pytest.mark.parametrize("shadow", [False, True], ids=["public", "shadow"])
def test_no_hostile_completion_reaches_the_reply_or_the_agents_draft(engine, hostile_llm, tmp_path, shadow):
    names = sorted(HOSTILE)
    helpdesk, records, ids = _run(engine, tmp_path, names, pipeline={"shadow_mode": shadow})

    assert set(hostile_llm.answered) >= set(names)
    for name in names:
        s = records.for_ticket("fake", ids[name])
        assert s is not None and s.mode == ("shadow" if shadow else "public"), name
        assert s.answer_mode == "extractive:ungrounded", f"{name}: {s.answer_mode}"
        posted = [p for p in helpdesk.posted if p.ticket_id == ids[name]]
        assert [p.private for p in posted] == ([True] if shadow else [False, True])
        note = next(p for p in posted if p.private)
        assert note.message.paragraphs[0] == s.answer_text  # the draft is the checked answer
        # ... and says why it is the entries (the label in the ticket's language)
        said = dict(note.message.facts)[words(s.language)("answer")]
        assert said == answer_mode_words(s.answer_mode, words(s.language))
        if s.language == "ru":
            assert "ссылки, контакты" in said, said
        for p in posted:
            text = _readable(p)
            leaked = [f for f in FOREIGN if f in text]
            assert not leaked, f"{name}: {leaked} in the {'private' if p.private else 'public'} comment"


def test_a_completion_that_reuses_the_entrys_link_is_posted_as_the_draft(engine, hostile_llm, tmp_path):
    helpdesk, records, ids = _run(engine, tmp_path, ["reuses_the_prompts_link"])

    s = records.for_ticket("fake", ids["reuses_the_prompts_link"])
    assert s is not None and s.answer_mode == "llm"
    assert "https://" in s.answer_text and "[1]" in s.answer_text
    public, note = helpdesk.posted
    assert s.answer_text in public.message.paragraphs and note.message.paragraphs[0] == s.answer_text
