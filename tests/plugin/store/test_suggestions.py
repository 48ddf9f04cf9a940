"""The outcome history of a suggestion: append-only events, the first answer standing, events seen
twice stored once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from plugin.store import Store
from plugin.store.suggestions import EntryRef, Suggestion


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Store:
    s = Store.open(tmp_path / "state.sqlite3", clock=clock)
    yield s
    s.close()


def _suggestion(sid: str = "abc123abc123", ticket: str = "1", at: float = 1_000.0) -> Suggestion:
    return Suggestion(id=sid, source="glpi", ticket_id=ticket, created_at=at, mode="public", language="ru",
                      entries=[EntryRef(entry_id="e", answer_id="a")])


def test_create_writes_the_suggestion_and_its_suggested_event_once(store: Store) -> None:
    s = store.suggestions.create(_suggestion())
    again = store.suggestions.create(_suggestion(sid="other0other0"))  # another worker, same ticket
    assert again.id == s.id
    assert [(e.kind, e.at, e.channel) for e in store.suggestions.events(s.id)] == [("suggested", 1_000.0, "glpi")]
    assert store.suggestions.get("other0other0") is None


def test_the_first_answer_stands_and_is_the_derived_outcome(store: Store, clock: Clock) -> None:
    s = store.suggestions.create(_suggestion())
    clock.now = 1_100.0
    first, was_first = store.suggestions.record_outcome(s.id, "not_solved", via="link", reason="not_related",
                                                        comment="about printers", client={"ip": "10.0.0.9"})
    clock.now = 1_200.0
    second, second_first = store.suggestions.record_outcome(s.id, "solved", via="mail")
    assert was_first and not second_first
    for got in (first, second, store.suggestions.get(s.id)):
        assert got is not None
        assert (got.outcome, got.outcome_via, got.outcome_reason, got.outcome_comment, got.outcome_at) == (
            "not_solved", "link", "not_related", "about printers", 1_100.0)
    assert [e.kind for e in store.suggestions.events(s.id)] == ["suggested", "rejected"]


def test_thirty_concurrent_answers_record_one(store: Store) -> None:
    s = store.suggestions.create(_suggestion())
    firsts: list[bool] = []
    barrier = threading.Barrier(30)

    def answer(i: int) -> None:
        barrier.wait()
        firsts.append(store.suggestions.record_outcome(s.id, "solved" if i % 2 else "not_solved", via="link")[1])

    threads = [threading.Thread(target=answer, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert firsts.count(True) == 1
    assert len([e for e in store.suggestions.events(s.id) if e.kind in ("confirmed", "rejected")]) == 1


def test_other_events_are_appended_once_per_ref(store: Store, clock: Clock) -> None:
    s = store.suggestions.create(_suggestion())
    assert store.suggestions.add_event(s.id, "agent_replied", channel="helpdesk", ref="c1")
    assert not store.suggestions.add_event(s.id, "agent_replied", channel="helpdesk", ref="c1")  # seen again
    assert store.suggestions.add_event(s.id, "agent_replied", channel="helpdesk", ref="c2")
    clock.now = 2_000.0
    assert store.suggestions.add_event(s.id, "timed_out", channel="worker")
    assert store.suggestions.add_event(s.id, "handed_off", channel="mail", reason="no answer in 48 h", at=2_001.0)
    events = store.suggestions.events(s.id)
    assert [(e.kind, e.ref) for e in events] == [
        ("suggested", ""), ("agent_replied", "c1"), ("agent_replied", "c2"), ("timed_out", ""), ("handed_off", "")]
    assert events[-1].at == 2_001.0 and events[-1].reason == "no answer in 48 h"
    # Not an answer: the outcome is still open.
    assert store.suggestions.get(s.id).outcome is None  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["confirmed", "rejected", "suggested", "liked"])
def test_answers_and_unknown_kinds_are_refused_by_add_event(store: Store, kind: str) -> None:
    s = store.suggestions.create(_suggestion())
    with pytest.raises(ValueError, match=kind):
        store.suggestions.add_event(s.id, kind, channel="x")  # type: ignore[arg-type]


def test_an_answer_to_an_unknown_suggestion_is_a_key_error(store: Store) -> None:
    with pytest.raises(KeyError):
        store.suggestions.record_outcome("nope", "solved", via="link")
