from __future__ import annotations

import collections
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from plugin.store import Store
from plugin.store.db import MAX_ERROR_CHARS, split_sql
from plugin.store.inbox import InboxItem
from tests.plugin.worker_crash_helper import HANDLED_DDL, record

REPO = Path(__file__).resolve().parents[2]


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Store:
    s = Store.open(tmp_path / "sub" / "state.db", clock=clock)
    yield s
    s.close()


def _add(store: Store, key: str, kind: str = "ticket_event", **kw) -> int:
    item_id = store.inbox.enqueue("glpi", kind, key, {"ticket_id": key}, **kw)
    assert item_id is not None
    return item_id


# -- file and schema ---------------------------------------------------------------------------------


def test_creates_parent_dirs_and_uses_wal(store: Store, tmp_path: Path):
    assert (tmp_path / "sub" / "state.db").exists()
    db = store.db.read()
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
    assert store.db.schema_version("state.inbox") == 3  # issue 8 added block 2, issue 9 block 3 (discarded)


def test_ensure_schema_applies_a_block_once(store: Store, tmp_path: Path):
    ddl = "CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO things (name) VALUES ('a;b');"
    assert store.db.ensure_schema("things", 1, ddl) is True
    assert store.db.ensure_schema("things", 1, ddl) is False
    # Another store on the same file (another process) does not apply it again either.
    other = Store.open(tmp_path / "sub" / "state.db")
    assert other.db.ensure_schema("things", 1, ddl) is False
    other.close()
    rows = store.db.read().execute("SELECT name FROM things").fetchall()
    assert [r["name"] for r in rows] == ["a;b"]
    assert store.db.schema_version("things") == 1


def test_ensure_schema_migrates_in_order_and_skips_older_blocks(store: Store):
    store.db.ensure_schema("things", 1, "CREATE TABLE things (id INTEGER PRIMARY KEY)")
    assert store.db.ensure_schema("things", 2, "ALTER TABLE things ADD COLUMN name TEXT") is True
    assert store.db.ensure_schema("things", 1, "CREATE TABLE things (id INTEGER PRIMARY KEY)") is False
    store.db.read().execute("SELECT id, name FROM things").fetchall()
    assert store.db.schema_version("things") == 2


def test_a_failing_schema_block_changes_nothing(store: Store):
    with pytest.raises(sqlite3.OperationalError):
        store.db.ensure_schema("broken", 1, "CREATE TABLE half (id INTEGER); CREATE TABLE oops (")
    with pytest.raises(sqlite3.OperationalError):
        store.db.read().execute("SELECT * FROM half")
    assert store.db.schema_version("broken") == 0


def test_split_sql_respects_triggers_and_strings():
    ddl = """
    CREATE TABLE t (x TEXT);
    CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET x = 'a;b' WHERE rowid = new.rowid; END;
    """
    assert len(split_sql(ddl)) == 2
    with pytest.raises(ValueError, match="incomplete"):
        split_sql("CREATE TABLE t (x TEXT); CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1;")


def test_transaction_rolls_back_on_error_and_nests(store: Store):
    store.db.ensure_schema("t", 1, "CREATE TABLE t (x INTEGER)")
    with pytest.raises(RuntimeError), store.db.transaction() as db:
        db.execute("INSERT INTO t VALUES (1)")
        raise RuntimeError("boom")
    with store.db.transaction() as db:
        db.execute("INSERT INTO t VALUES (2)")
        with pytest.raises(RuntimeError), store.db.transaction() as inner:
            inner.execute("INSERT INTO t VALUES (3)")
            raise RuntimeError("inner only")
        with store.db.transaction() as inner:
            inner.execute("INSERT INTO t VALUES (4)")
    assert [r[0] for r in store.db.read().execute("SELECT x FROM t ORDER BY x")] == [2, 4]


# -- inbox -------------------------------------------------------------------------------------------


def test_enqueue_dedups_on_delivery_key(store: Store, clock: FakeClock):
    first = store.inbox.enqueue("glpi", "ticket_event", "glpi:1:created", {"ticket_id": "1", "text": "Привет"})
    again = store.inbox.enqueue("glpi", "ticket_event", "glpi:1:created", {"ticket_id": "1", "other": True})
    assert isinstance(first, int)
    assert again is None
    assert store.inbox.counts() == {"pending": 1, "leased": 0, "done": 0, "dead": 0, "discarded": 0}
    item = store.inbox.get(first)
    assert isinstance(item, InboxItem)
    assert item.payload == {"ticket_id": "1", "text": "Привет"}
    assert (item.source, item.kind, item.status, item.attempts) == ("glpi", "ticket_event", "pending", 0)
    assert item.received_at == item.available_at == clock.now


def test_enqueue_rejects_an_empty_key(store: Store):
    with pytest.raises(ValueError):
        store.inbox.enqueue("glpi", "ticket_event", "", {})


def test_enqueue_is_durable_for_another_connection(store: Store, tmp_path: Path):
    item_id = _add(store, "k1")
    with sqlite3.connect(tmp_path / "sub" / "state.db") as db:
        assert db.execute("SELECT status FROM inbox WHERE id = ?", (item_id,)).fetchone() == ("pending",)


def test_claim_takes_the_oldest_available_and_honours_delay(store: Store, clock: FakeClock):
    later = _add(store, "later", delay_s=30)
    a = _add(store, "a")
    b = _add(store, "b")
    first = store.inbox.claim("w1", 60)
    assert first is not None and first.id == a
    assert (first.status, first.lease_owner, first.attempts, first.lease_until) == ("leased", "w1", 1, clock.now + 60)
    second = store.inbox.claim("w1", 60)
    assert second is not None and second.id == b
    assert store.inbox.claim("w1", 60) is None  # "later" is not due yet
    clock.advance(30)
    third = store.inbox.claim("w1", 60)
    assert third is not None and third.id == later


def test_claim_filters_on_kinds(store: Store):
    _add(store, "a", kind="ticket_event")
    mail = _add(store, "m", kind="mail")
    item = store.inbox.claim("w1", 60, kinds={"mail"})
    assert item is not None and item.id == mail
    assert store.inbox.claim("w1", 60, kinds={"mail"}) is None
    assert store.inbox.claim("w1", 60, kinds=()) is None


def test_a_valid_lease_protects_the_item(store: Store, clock: FakeClock):
    item_id = _add(store, "a")
    assert store.inbox.claim("w1", 10) is not None
    clock.advance(10)  # lease_until == now: still held
    assert store.inbox.claim("w2", 10) is None
    assert store.inbox.extend_lease(item_id, "w1", 10) is True
    clock.advance(5)
    assert store.inbox.claim("w2", 10) is None
    assert store.inbox.extend_lease(item_id, "w2", 10) is False


def test_an_expired_lease_is_taken_by_another_owner(store: Store, clock: FakeClock):
    item_id = _add(store, "a")
    assert store.inbox.claim("crashed", 10) is not None
    clock.advance(10.5)
    again = store.inbox.claim("w2", 10)
    assert again is not None and again.id == item_id
    assert (again.lease_owner, again.attempts) == ("w2", 2)
    # The old owner comes back: its result no longer counts.
    assert store.inbox.complete(item_id, "crashed") is False
    assert store.inbox.retry_later(item_id, "crashed", "late", 1) is False
    assert store.inbox.bury(item_id, "crashed", "late") is False
    assert store.inbox.complete(item_id, "w2") is True
    done = store.inbox.get(item_id)
    assert done is not None
    assert (done.status, done.done_at, done.lease_owner) == ("done", clock.now, None)


def test_complete_after_the_lease_ran_out_but_nobody_took_it(store: Store, clock: FakeClock):
    item_id = _add(store, "a")
    store.inbox.claim("w1", 10)
    clock.advance(100)
    assert store.inbox.complete(item_id, "w1") is True


def test_retry_later_bury_and_requeue(store: Store, clock: FakeClock):
    item_id = _add(store, "a")
    store.inbox.claim("w1", 60)
    assert store.inbox.retry_later(item_id, "w1", "TransientConnectorError: 503", 20) is True
    item = store.inbox.get(item_id)
    assert item is not None
    assert (item.status, item.available_at, item.last_error, item.lease_owner) == (
        "pending", clock.now + 20, "TransientConnectorError: 503", None)
    assert store.inbox.claim("w1", 60) is None
    clock.advance(20)
    assert store.inbox.claim("w1", 60) is not None
    assert store.inbox.requeue(item_id) is False  # only dead items are requeued
    assert store.inbox.bury(item_id, "w1", "x" * 5000) is True
    dead = store.inbox.get(item_id)
    assert dead is not None and dead.status == "dead" and dead.attempts == 2
    assert dead.last_error is not None and len(dead.last_error) == MAX_ERROR_CHARS
    assert store.inbox.counts() == {"pending": 0, "leased": 0, "done": 0, "dead": 1, "discarded": 0}
    assert store.inbox.requeue(item_id) is True
    back = store.inbox.get(item_id)
    assert back is not None and (back.status, back.attempts, back.available_at) == ("pending", 0, clock.now)
    assert store.inbox.complete(item_id, "w1") is False  # not leased any more


def test_items_newest_first_counts_and_purge(store: Store, clock: FakeClock):
    ids = [_add(store, f"k{i}") for i in range(4)]
    for _ in range(3):
        item = store.inbox.claim("w", 60)
        assert item is not None
        store.inbox.complete(item.id, "w")
        clock.advance(100)
    assert [i.id for i in store.inbox.items()] == ids[::-1]
    assert [i.id for i in store.inbox.items("done", limit=2)] == [ids[2], ids[1]]
    assert store.inbox.counts() == {"pending": 1, "leased": 0, "done": 3, "dead": 0, "discarded": 0}
    with pytest.raises(ValueError):
        store.inbox.items("gone")  # type: ignore[arg-type]
    # done at +0, +100, +200; now is +300: only the first two are older than 150 s.
    assert store.inbox.purge_done(150) == 2
    assert store.inbox.counts() == {"pending": 1, "leased": 0, "done": 1, "dead": 0, "discarded": 0}
    assert store.inbox.get(ids[0]) is None


def test_watermarks(store: Store):
    assert store.inbox.get_watermark("poll:redmine") is None
    store.inbox.set_watermark("poll:redmine", "2024-05-01T10:00:00Z")
    store.inbox.set_watermark("poll:redmine", "2024-05-02T10:00:00Z")
    assert store.inbox.get_watermark("poll:redmine") == "2024-05-02T10:00:00Z"
    assert store.inbox.get_watermark("poll:glpi") is None


# -- concurrency -------------------------------------------------------------------------------------


def _assert_each_handled_once(store: Store, ids: list[int]) -> collections.Counter[str]:
    rows = store.db.read().execute("SELECT item_id, owner FROM handled").fetchall()
    handled = collections.Counter(r["item_id"] for r in rows)
    duplicates = [i for i, n in handled.items() if n > 1]
    assert duplicates == []
    assert sorted(handled) == sorted(ids)
    assert store.inbox.counts()["done"] == len(ids)
    return collections.Counter(r["owner"] for r in rows)


def test_threads_handle_each_item_exactly_once(tmp_path: Path):
    store = Store.open(tmp_path / "state.db")
    store.db.ensure_schema("tests.handled", 1, HANDLED_DDL)
    ids = [_add(store, f"k{i}") for i in range(200)]
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def drain(owner: str) -> None:
        try:
            start.wait()
            while (item := store.inbox.claim(owner, 60)) is not None:
                record(store, item.id, owner)
                assert store.inbox.complete(item.id, owner)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=drain, args=(f"t{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    by_owner = _assert_each_handled_once(store, ids)
    print("items per thread:", dict(by_owner))
    store.close()


def test_processes_handle_each_item_exactly_once(tmp_path: Path):
    db = tmp_path / "state.db"
    store = Store.open(db)
    store.db.ensure_schema("tests.handled", 1, HANDLED_DDL)
    ids = [_add(store, f"k{i}") for i in range(200)]
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-m", "tests.plugin.worker_crash_helper", "drain", str(db), f"p{n}", str(go)],
                         cwd=REPO, env=env)
        for n in range(2)
    ]
    go.touch()
    try:
        codes = [p.wait(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert codes == [0, 0]
    by_owner = _assert_each_handled_once(store, ids)
    print("items per process:", dict(by_owner))
    store.close()


def test_a_forked_child_opens_its_own_connection(store: Store):
    _add(store, "a")
    parent_conn = store.db.read()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            ok = store.db.read() is not parent_conn and store.inbox.claim("child", 60) is not None
            os.write(w, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(w)
    answer = os.read(r, 1)
    os.close(r)
    os.waitpid(pid, 0)
    assert answer == b"1"
    assert store.inbox.counts()["leased"] == 1
    assert store.db.read() is parent_conn


# -- issue 8: purging, delivery keys, retry bookkeeping, connection health -------------------------


def _done(store: Store, key: str) -> int:
    item_id = _add(store, key)
    item = store.inbox.claim("w", 60)
    assert item is not None and item.id == item_id
    assert store.inbox.complete(item_id, "w")
    return item_id


def test_item11_a_replay_of_a_purged_item_is_still_recognised(store: Store, clock: FakeClock):
    old = _done(store, "glpi:1:new")
    clock.advance(8 * 86_400)
    recent = _done(store, "glpi:2:new")
    assert store.inbox.purge_done(7 * 86_400) == 1
    assert store.inbox.get(old) is None and store.inbox.get(recent) is not None
    # The helpdesk replays the old delivery after the purge: still a duplicate, nothing stored.
    assert store.inbox.enqueue("glpi", "ticket_event", "glpi:1:new", {"ticket_id": "1"}) is None
    assert store.inbox.counts() == {"pending": 0, "leased": 0, "done": 1, "dead": 0, "discarded": 0}
    # The compact key table forgets only after its own, longer window (counted from reception).
    clock.advance(80 * 86_400)
    assert store.inbox.purge_delivery_keys(90 * 86_400) == 0
    clock.advance(3 * 86_400)
    assert store.inbox.purge_delivery_keys(90 * 86_400) == 1
    assert store.inbox.enqueue("glpi", "ticket_event", "glpi:1:new", {"ticket_id": "1"}) is not None


def test_item11_purge_leaves_pending_leased_and_dead_items(store: Store, clock: FakeClock):
    pending = _add(store, "p")
    leased = _add(store, "l")
    dead = _add(store, "d")
    assert store.inbox.claim("w", 60) is not None  # "p"
    store.inbox.retry_later(pending, "w", "503", 0)
    store.inbox.claim("w", 10**9)  # "p" again (the oldest), held for a long time
    taken = store.inbox.claim("w", 60)
    assert taken is not None and taken.id == leased
    taken = store.inbox.claim("w", 60)
    assert taken is not None and taken.id == dead
    store.inbox.bury(dead, "w", "NotFound: gone")
    clock.advance(400 * 86_400)
    assert store.inbox.purge_done(1) == 0
    assert {store.inbox.get(i).status for i in (pending, leased, dead)} == {"leased", "dead"}  # type: ignore[union-attr]


def test_item4_transient_failures_keep_the_start_of_their_streak(store: Store, clock: FakeClock):
    item_id = _add(store, "a")
    store.inbox.claim("w", 60)
    first = clock.now
    store.inbox.retry_later(item_id, "w", "TransientConnectorError: 503", 5)
    clock.advance(5)
    store.inbox.claim("w", 60)
    store.inbox.retry_later(item_id, "w", "TransientConnectorError: 503", 5)
    item = store.inbox.get(item_id)
    assert item is not None and item.failing_since == first and item.attempts == 2
    clock.advance(5)
    store.inbox.claim("w", 60)
    assert store.inbox.bury(item_id, "w", "gave up", gave_up=True)
    dead = store.inbox.get(item_id)
    assert dead is not None and dead.gave_up
    assert store.inbox.requeue(item_id)
    back = store.inbox.get(item_id)
    assert back is not None and (back.failing_since, back.gave_up, back.lost_leases) == (None, False, 0)


def test_item4_expired_leases_are_counted_apart_from_attempts(store: Store, clock: FakeClock):
    item_id = _add(store, "a")
    store.inbox.claim("w", 10)
    store.inbox.retry_later(item_id, "w", "503", 0)
    store.inbox.claim("crashing", 10)
    clock.advance(11)
    again = store.inbox.claim("next", 10)
    assert again is not None and (again.attempts, again.lost_leases) == (3, 1)


def test_item4_a_revived_enqueue_requeues_an_item_the_worker_gave_up_on(store: Store):
    gave_up = _add(store, "glpi:poll:5:2024-05-01 10:00:00")
    permanent = _add(store, "glpi:poll:6:2024-05-01 10:00:00")
    for item_id, flag in ((gave_up, True), (permanent, False)):
        store.inbox.claim("w", 60)
        store.inbox.bury(item_id, "w", "x", gave_up=flag)
    assert store.inbox.enqueue("glpi", "ticket_event", "glpi:poll:5:2024-05-01 10:00:00", {}) is None
    assert store.inbox.get(gave_up).status == "dead"  # type: ignore[union-attr]
    assert store.inbox.enqueue("glpi", "ticket_event", "glpi:poll:5:2024-05-01 10:00:00", {}, revive=True) == gave_up
    back = store.inbox.get(gave_up)
    assert back is not None and (back.status, back.attempts, back.gave_up) == ("pending", 0, False)
    # A permanent failure (the ticket is gone, the connector refused) is not revived by a poll.
    assert store.inbox.enqueue("glpi", "ticket_event", "glpi:poll:6:2024-05-01 10:00:00", {}, revive=True) is None
    assert store.inbox.get(permanent).status == "dead"  # type: ignore[union-attr]


def test_item4_connection_health_records_the_first_failure_of_a_streak(store: Store, clock: FakeClock):
    assert store.health.connection_health() == {}
    start = clock.now
    store.health.note_failure("glpi", "GLPITransientError: GLPI answered HTTP 503")
    clock.advance(60)
    store.health.note_failure("glpi", "GLPITransientError: GLPI is unreachable (ConnectionError)")
    health = store.health.connection_health()
    assert health["glpi"].failing_since == start
    assert health["glpi"].last_failure_at == start + 60
    assert health["glpi"].failures == 2
    assert health["glpi"].last_error == "GLPITransientError: GLPI is unreachable (ConnectionError)"
    store.health.note_success("glpi")
    assert store.health.connection_health()["glpi"].failing_since is None
    clock.advance(10)
    store.health.note_failure("glpi", "again")
    assert store.health.connection_health()["glpi"].failing_since == start + 70


def test_item4_an_inbox_of_the_previous_version_is_migrated(tmp_path: Path):
    from plugin.store.db import _SCHEMA_VERSIONS_DDL
    from plugin.store.migrations import INBOX_V1 as _INBOX_DDL

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(_SCHEMA_VERSIONS_DDL + ";" + _INBOX_DDL)
        db.execute("INSERT INTO schema_versions VALUES ('state.inbox', 1, 0)")
        db.execute("INSERT INTO inbox (source, kind, delivery_key, payload, status, attempts, available_at,"
                   " received_at, updated_at, last_error) VALUES ('glpi', 'ticket_event', 'k', '{}', 'dead', 8,"
                   " 0, 0, 0, 'gave up after 8 attempts')")
    store = Store.open(path)
    assert store.db.schema_version("state.inbox") == 3
    (item,) = store.inbox.items()
    assert (item.status, item.failing_since, item.lost_leases, item.gave_up) == ("dead", None, 0, False)
    assert store.inbox.requeue(item.id)
    store.close()
