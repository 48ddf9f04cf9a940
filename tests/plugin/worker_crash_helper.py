"""Subprocess side of the state/worker tests (run as ``python -m tests.plugin.worker_crash_helper``).

``drain DB OWNER GO_FILE``: wait for GO_FILE, then claim items until none is left, recording each
handling in the ``handled`` table.
``crash DB``: a real Worker whose handler records "started" and then hangs (the test kills it).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from plugin.jobs.worker import Worker
from plugin.store import Store
from plugin.store.inbox import InboxItem

HANDLED_DDL = """
CREATE TABLE IF NOT EXISTS handled (
    seq INTEGER PRIMARY KEY,
    item_id INTEGER NOT NULL,
    owner TEXT NOT NULL,
    what TEXT NOT NULL DEFAULT 'handled'
);
"""


def record(store: Store, item_id: int, owner: str, what: str = "handled") -> None:
    with store.db.transaction() as db:
        db.execute("INSERT INTO handled (item_id, owner, what) VALUES (?, ?, ?)", (item_id, owner, what))


def drain(db: Path, owner: str, go_file: Path) -> None:
    store = Store.open(db)
    store.db.ensure_schema("tests.handled", 1, HANDLED_DDL)
    deadline = time.monotonic() + 60
    while not go_file.exists():
        if time.monotonic() > deadline:
            raise SystemExit("go file never appeared")
        time.sleep(0.005)
    while (item := store.inbox.claim(owner, 60.0)) is not None:
        record(store, item.id, owner)
        time.sleep(0.001)
        if not store.inbox.complete(item.id, owner):
            raise SystemExit(f"lost the lease of item {item.id}")


def crash(db: Path) -> None:
    store = Store.open(db)
    store.db.ensure_schema("tests.handled", 1, HANDLED_DDL)

    def hang(item: InboxItem) -> None:
        record(store, item.id, "crashing", "started")
        time.sleep(600)

    Worker(store, {"job": hang}, owner="crashing", lease_s=1.0).run_once()


def main(argv: list[str]) -> None:
    if argv[0] == "drain":
        drain(Path(argv[1]), argv[2], Path(argv[3]))
    elif argv[0] == "crash":
        crash(Path(argv[1]))
    else:
        raise SystemExit(f"unknown mode {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
