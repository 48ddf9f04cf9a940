from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from connectors.base import NotFound, TicketEvent, TransientConnectorError
from plugin.jobs.worker import PermanentFailure, PollJob, RetryLater, Worker
from plugin.store import Store
from plugin.store.inbox import InboxItem
from tests.plugin.test_state import FakeClock
from tests.plugin.worker_crash_helper import HANDLED_DDL

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Store:
    s = Store.open(tmp_path / "state.db", clock=clock)
    yield s
    s.close()


def make_worker(store: Store, clock: FakeClock, handlers, **kw) -> Worker:
    kw.setdefault("max_attempts", 4)
    return Worker(store, handlers, owner="w1", clock=clock, rng=random.Random(7), **kw)


def _add(store: Store, key: str, kind: str = "ticket_event") -> int:
    item_id = store.inbox.enqueue("glpi", kind, key, {"ticket_id": key, "body": "SECRET-BODY"})
    assert item_id is not None
    return item_id


def _status(store: Store, item_id: int) -> InboxItem:
    item = store.inbox.get(item_id)
    assert item is not None
    return item


def test_success_marks_done_and_logs_without_payload(store, clock, caplog):
    seen: list[InboxItem] = []
    item_id = _add(store, "a")
    worker = make_worker(store, clock, {"ticket_event": seen.append})
    with caplog.at_level(logging.INFO, logger="plugin.jobs.worker"):
        assert worker.run_once() is True
    assert worker.run_once() is False
    assert [i.id for i in seen] == [item_id]
    assert seen[0].payload["ticket_id"] == "a"
    assert _status(store, item_id).status == "done"
    done = [r for r in caplog.records if r.getMessage().startswith("inbox_item_done")]
    assert len(done) == 1 and f"id={item_id}" in done[0].getMessage()
    assert "SECRET-BODY" not in caplog.text


def test_transient_failures_back_off_then_go_dead(store, clock, caplog):
    # Issue 8 item 4 changed the bound: transient failures are retried for ``retry_for_s`` (hours by
    # default), not a number of attempts; the backoff is capped. Here: a one-hour budget.
    calls: list[int] = []

    def flaky(item: InboxItem) -> None:
        calls.append(item.attempts)
        raise TransientConnectorError("GLPI answered 503")

    item_id = _add(store, "a")
    started = clock.now
    worker = make_worker(store, clock, {"ticket_event": flaky}, max_attempts=5, backoff_base_s=2, backoff_max_s=12,
                         retry_for_s=3600)
    delays = []
    with caplog.at_level(logging.WARNING, logger="plugin.jobs.worker"):
        while True:
            assert worker.run_once() is True
            item = _status(store, item_id)
            if item.status == "dead":
                break
            assert (item.status, item.attempts) == ("pending", len(calls))
            assert item.last_error == "TransientConnectorError: GLPI answered 503"
            assert item.failing_since == started
            delay = item.available_at - clock.now
            delays.append(delay)
            assert worker.run_once() is False  # not due before its delay
            clock.advance(delay)
    # base * 2**(n-1), capped at 12, +/-20 % jitter: 2, 4, 8, 12, 12, ...
    for delay, nominal in zip(delays, (2, 4, 8, 12, 12, 12), strict=False):
        assert nominal * 0.8 <= delay <= nominal * 1.2
    assert delays[0] < delays[1] < delays[2]
    assert max(delays) <= 12 * 1.2
    dead = _status(store, item_id)
    # Far more than max_attempts (which now bounds crashes only): retried until the hour was over.
    assert dead.attempts == len(calls) > 200
    assert clock.now - started >= 3600 > clock.now - started - 12 * 1.2
    assert dead.gave_up
    assert dead.last_error == (f"gave up after {dead.attempts} attempts over 1.0 h: "
                               "TransientConnectorError: GLPI answered 503")
    assert calls == list(range(1, dead.attempts + 1))
    assert sum(r.getMessage().startswith("inbox_item_retry") for r in caplog.records) == dead.attempts - 1
    assert sum(r.getMessage().startswith("inbox_item_dead") for r in caplog.records) == 1


def test_retry_later_with_its_own_delay(store, clock):
    def later(item: InboxItem) -> None:
        raise RetryLater("LLM busy", delay_s=42)

    item_id = _add(store, "a")
    make_worker(store, clock, {"ticket_event": later}).run_once()
    item = _status(store, item_id)
    assert (item.status, item.available_at, item.last_error) == ("pending", clock.now + 42, "RetryLater: LLM busy")


def test_any_exception_marked_transient_is_retried(store, clock):
    class Flaky(Exception):
        transient = True

    def handler(item: InboxItem) -> None:
        raise Flaky("later")

    item_id = _add(store, "a")
    make_worker(store, clock, {"ticket_event": handler}).run_once()
    assert _status(store, item_id).status == "pending"


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (PermanentFailure("ticket is private"), "PermanentFailure: ticket is private"),
        (NotFound("ticket 7 not found"), "NotFound: ticket 7 not found"),
    ],
)
def test_permanent_failure_goes_dead_at_once(store, clock, exc, reason):
    def handler(item: InboxItem) -> None:
        raise exc

    item_id = _add(store, "a")
    make_worker(store, clock, {"ticket_event": handler}).run_once()
    item = _status(store, item_id)
    assert (item.status, item.attempts, item.last_error) == ("dead", 1, reason)
    # The admin's retry puts it back, and a fixed handler finishes it.
    assert store.inbox.requeue(item_id)
    make_worker(store, clock, {"ticket_event": lambda item: None}).run_once()
    assert _status(store, item_id).status == "done"


def test_unexpected_exception_is_logged_with_stack_and_retried(store, clock, caplog):
    def buggy(item: InboxItem) -> None:
        raise KeyError("missing")

    item_id = _add(store, "a")
    worker = make_worker(store, clock, {"ticket_event": buggy})
    with caplog.at_level(logging.WARNING, logger="plugin.jobs.worker"):
        assert worker.run_once() is True
    item = _status(store, item_id)
    assert (item.status, item.last_error) == ("pending", "KeyError: 'missing'")
    errors = [r for r in caplog.records if r.getMessage().startswith("inbox_item_error")]
    assert len(errors) == 1
    assert errors[0].exc_info is not None and errors[0].exc_info[0] is KeyError
    assert "Traceback" in caplog.text and "SECRET-BODY" not in caplog.text


def test_unknown_kind_goes_dead(store, clock):
    item_id = _add(store, "a", kind="mystery")
    make_worker(store, clock, {"ticket_event": lambda item: None}).run_once()
    item = _status(store, item_id)
    assert (item.status, item.last_error) == ("dead", "no handler for kind mystery")


def test_worker_goes_on_after_a_failing_item(store, clock):
    handled: list[str] = []

    def handler(item: InboxItem) -> None:
        if item.delivery_key == "bad":
            raise ValueError("bug")
        handled.append(item.delivery_key)

    bad, good = _add(store, "bad"), _add(store, "good")
    worker = make_worker(store, clock, {"ticket_event": handler})
    stop = threading.Event()
    worker._sleep = lambda s: stop.set()  # one pass over the inbox, then stop instead of waiting
    worker.run(stop)
    assert handled == ["good"]
    assert (_status(store, bad).status, _status(store, good).status) == ("pending", "done")


def test_items_whose_workers_kept_dying_go_dead_without_running(store, clock):
    calls = []
    item_id = _add(store, "a")
    for _ in range(2):  # two workers took it and died
        assert store.inbox.claim("dead-worker", 10) is not None
        clock.advance(11)
    worker = make_worker(store, clock, {"ticket_event": calls.append}, max_attempts=2)
    assert worker.run_once() is True
    item = _status(store, item_id)
    assert calls == []
    assert item.status == "dead"
    assert item.last_error is not None and item.last_error.startswith("gave up after 2 attempts")


def test_lost_lease_does_not_overwrite_the_new_owner(store, clock, caplog):
    item_id = _add(store, "a")

    def slow(item: InboxItem) -> None:
        clock.advance(200)  # longer than the lease: another worker takes the item meanwhile
        assert store.inbox.claim("other", 60) is not None

    worker = make_worker(store, clock, {"ticket_event": slow}, lease_s=60)
    with caplog.at_level(logging.WARNING, logger="plugin.jobs.worker"):
        worker.run_once()
    assert _status(store, item_id).lease_owner == "other"
    assert "inbox_item_lease_lost" in caplog.text


def test_item4_crashes_are_counted_apart_from_transient_retries(store, clock):
    """Many transient retries, then one worker dies: the item is handled, not given up."""
    item_id = _add(store, "a")
    for _ in range(10):
        store.inbox.claim("w0", 60)
        store.inbox.retry_later(item_id, "w0", "TransientConnectorError: 503", 0)
    assert store.inbox.claim("dying", 10) is not None
    clock.advance(11)
    handled: list[InboxItem] = []
    worker = make_worker(store, clock, {"ticket_event": handled.append}, max_attempts=2)
    assert worker.run_once() is True
    assert [i.attempts for i in handled] == [12]
    assert _status(store, item_id).status == "done"


def test_item4_health_records_a_connection_failing_and_clears_it_on_success(store, clock):
    fail = {"on": True}

    def handler(item: InboxItem) -> None:
        if fail["on"]:
            raise TransientConnectorError("GLPI is unreachable (ConnectionError)")

    _add(store, "a")
    worker = make_worker(store, clock, {"ticket_event": handler})
    started = clock.now
    worker.run_once()
    clock.advance(600)
    worker.run_once()
    health = store.health.connection_health()["glpi"]
    assert (health.failing_since, health.failures) == (started, 2)
    assert health.last_error == "TransientConnectorError: GLPI is unreachable (ConnectionError)"
    fail["on"] = False
    clock.advance(3600)
    worker.run_once()
    assert store.health.connection_health()["glpi"].failing_since is None


def test_item4_other_failures_say_nothing_about_the_connection(store, clock):
    def handler(item: InboxItem) -> None:
        raise RetryLater("the LLM is busy")

    _add(store, "a")
    make_worker(store, clock, {"ticket_event": handler}).run_once()
    assert store.health.connection_health() == {}


def test_item4_a_failing_poller_marks_its_source(store, clock):
    outage = {"on": True}

    def poll(since: str | None) -> tuple[list[TicketEvent], str | None]:
        if outage["on"]:
            raise TransientConnectorError("Redmine did not answer")
        return [], "w1"

    worker = make_worker(store, clock, {}, pollers=[PollJob("redmine", poll, 30, _enqueue(store))])
    started = clock.now
    worker.run_due_pollers()
    assert store.health.connection_health()["redmine"].failing_since == started
    outage["on"] = False
    clock.advance(30)
    worker.run_due_pollers()
    assert store.health.connection_health()["redmine"].failing_since is None


def test_item3_a_long_item_keeps_its_lease_while_it_is_worked(tmp_path: Path):
    store = Store.open(tmp_path / "state.db")
    item_id = _add(store, "slow")
    taken_by_other: list[InboxItem] = []
    working = threading.Event()

    def slow(item: InboxItem) -> None:
        working.set()
        deadline = time.monotonic() + 2.0  # four times the lease
        while time.monotonic() < deadline:
            other = store.inbox.claim("other", 0.5)
            if other is not None:
                taken_by_other.append(other)
            time.sleep(0.05)

    worker = Worker(store, {"ticket_event": slow}, owner="w1", lease_s=0.5)
    assert worker.run_once() is True
    assert working.is_set()
    assert taken_by_other == [], "the lease ran out while the item was being worked"
    done = _status(store, item_id)
    assert (done.status, done.attempts) == ("done", 1)
    store.close()


def test_item11_the_worker_purges_done_items_once_an_hour(store, clock):
    worker = make_worker(store, clock, {"ticket_event": lambda item: None},
                         purge_done_after_s=86_400, keep_delivery_keys_s=30 * 86_400)
    stop = threading.Event()
    worker._sleep = lambda s: stop.set()

    def one_pass() -> None:
        stop.clear()
        worker.run(stop)

    old = _add(store, "old")
    one_pass()  # handles "old"; nothing is old enough to purge yet
    assert _status(store, old).status == "done"
    clock.advance(86_400 + 1)
    newer = _add(store, "newer")
    one_pass()  # an hour has passed since the last purge: "old" goes, its key stays known
    assert store.inbox.get(old) is None and _status(store, newer).status == "done"
    assert store.inbox.enqueue("glpi", "ticket_event", "old", {}) is None
    clock.advance(86_400 - 1800)
    one_pass()
    assert store.inbox.get(newer) is not None  # done a day ago minus 30 min: kept
    clock.advance(1800 + 1)
    one_pass()
    assert store.inbox.get(newer) is not None  # old enough now, but the last purge was only 30 min ago
    clock.advance(1800)
    one_pass()
    assert store.inbox.get(newer) is None
    clock.advance(30 * 86_400)
    one_pass()  # the key table forgets after its own window
    assert store.inbox.enqueue("glpi", "ticket_event", "old", {}) is not None


# -- pollers -----------------------------------------------------------------------------------------


def _event(n: int) -> TicketEvent:
    return TicketEvent(source="redmine", ticket_id=str(n), kind="updated", delivery_key=f"redmine:{n}:u")


def _enqueue(store: Store):
    def enqueue(event: TicketEvent) -> None:
        store.inbox.enqueue(event.source, "ticket_event", event.delivery_key, event.model_dump(mode="json"))

    return enqueue


def test_poller_enqueues_and_advances_the_watermark(store, clock):
    seen_since: list[str | None] = []

    def poll(since: str | None) -> tuple[list[TicketEvent], str | None]:
        seen_since.append(since)
        return ([_event(1), _event(2)], "w1") if since is None else ([_event(2), _event(3)], "w2")

    job = PollJob("redmine", poll, 60, _enqueue(store))
    worker = make_worker(store, clock, {}, pollers=[job])
    assert worker.run_due_pollers() == 2
    assert store.inbox.get_watermark("poll:redmine") == "w1"
    assert worker.run_due_pollers() == 0  # not due again yet
    clock.advance(60)
    assert worker.run_due_pollers() == 2
    assert seen_since == [None, "w1"]
    assert store.inbox.get_watermark("poll:redmine") == "w2"
    keys = sorted(i.delivery_key for i in store.inbox.items())
    assert keys == ["redmine:1:u", "redmine:2:u", "redmine:3:u"]  # the overlap was de-duplicated
    assert store.inbox.items()[0].payload["ticket_id"] == "3"


def test_poller_crash_midway_keeps_the_watermark(store, clock, caplog):
    fail = {"on": True}
    real = _enqueue(store)

    def enqueue(event: TicketEvent) -> None:
        if fail["on"] and event.ticket_id == "2":
            raise OSError("disk full")
        real(event)

    store.inbox.set_watermark("poll:redmine", "w0")
    job = PollJob("redmine", lambda since: ([_event(1), _event(2), _event(3)], "w1"), 30, enqueue)
    worker = make_worker(store, clock, {}, pollers=[job])
    with caplog.at_level(logging.WARNING, logger="plugin.jobs.worker"):
        assert worker.run_due_pollers() == 0
    assert store.inbox.get_watermark("poll:redmine") == "w0"
    failed = [r for r in caplog.records if r.getMessage().startswith("poll_failed")]
    assert len(failed) == 1 and failed[0].exc_info is not None  # unexpected: stack logged
    fail["on"] = False
    clock.advance(30)
    assert worker.run_due_pollers() == 3
    assert store.inbox.get_watermark("poll:redmine") == "w1"
    assert store.inbox.counts()["pending"] == 3


def test_transient_poll_error_is_a_warning_and_the_loop_goes_on(store, clock, caplog):
    def poll(since: str | None) -> tuple[list[TicketEvent], str | None]:
        raise TransientConnectorError("Redmine timed out")

    job = PollJob("redmine", poll, 30, _enqueue(store))
    worker = make_worker(store, clock, {}, pollers=[job])
    stop = threading.Event()
    worker._sleep = lambda s: stop.set()
    with caplog.at_level(logging.WARNING, logger="plugin.jobs.worker"):
        worker.run(stop)
    failed = [r for r in caplog.records if r.getMessage().startswith("poll_failed")]
    assert len(failed) == 1
    assert failed[0].levelno == logging.WARNING and failed[0].exc_info is None
    assert store.inbox.get_watermark("poll:redmine") is None


# -- the thread --------------------------------------------------------------------------------------


def test_wake_makes_the_idle_thread_take_a_new_item(tmp_path: Path):
    store = Store.open(tmp_path / "state.db")
    idle = threading.Event()
    handled = threading.Event()

    def poll(since: str | None) -> tuple[list[object], str | None]:
        idle.set()  # pollers run when the inbox is empty, right before the idle wait
        return [], since

    # A 60 s idle wait: without wake() the item would not be seen within the 10 s below.
    worker = Worker(store, {"ticket_event": lambda item: handled.set()}, idle_poll_s=60,
                    pollers=[PollJob("probe", poll, 0.0, lambda e: None)])
    worker.start_thread()
    try:
        assert idle.wait(10)
        _add(store, "a")
        worker.wake()
        assert handled.wait(10)
    finally:
        assert worker.stop(10)
    assert store.inbox.counts()["done"] == 1
    store.close()


def test_a_killed_worker_leaves_its_item_to_the_next_after_the_lease(tmp_path: Path):
    db = tmp_path / "state.db"
    store = Store.open(db)
    store.db.ensure_schema("tests.handled", 1, HANDLED_DDL)
    item_id = store.inbox.enqueue("glpi", "job", "glpi:1", {"ticket_id": "1"})
    assert item_id is not None
    proc = subprocess.Popen([sys.executable, "-m", "tests.plugin.worker_crash_helper", "crash", str(db)],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 60
        while not store.db.read().execute("SELECT 1 FROM handled WHERE what = 'started'").fetchall():
            assert proc.poll() is None, "the helper worker exited early"
            assert time.monotonic() < deadline, "the helper worker never started the item"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    taken = _status(store, item_id)
    assert (taken.status, taken.lease_owner, taken.attempts) == ("leased", "crashing", 1)
    assert taken.lease_until is not None

    handled: list[InboxItem] = []
    # While the lease holds, a new worker leaves the item alone...
    before = Store.open(db, clock=lambda: taken.lease_until - 0.5)
    assert Worker(before, {"job": handled.append}, owner="next").run_once() is False
    # ...once it has run out, the new worker finishes it.
    after = Store.open(db, clock=lambda: taken.lease_until + 0.01)
    assert Worker(after, {"job": handled.append}, owner="next").run_once() is True
    assert [i.id for i in handled] == [item_id]
    done = _status(store, item_id)
    assert (done.status, done.attempts) == ("done", 2)
    for s in (before, after, store):
        s.close()
