"""All SQL of the plugin: one SQLite file (``<data_dir>/state.sqlite3``) and a store per concern.

- :mod:`.db`          connections, transactions, versioned schema blocks;
- :mod:`.migrations`  every schema change, in order (an existing ``var/`` is upgraded when opened);
- :mod:`.inbox`       the durable inbox and the pollers' watermarks;
- :mod:`.health`      which sources the worker cannot reach, since when;
- :mod:`.suggestions` suggestions and their outcome history;
- :mod:`.mail`        mail conversations;
- :mod:`.analytics`   the report's facts, folded from the outcome history;
- :mod:`.incidents`   outage incidents and their requests.
- :mod:`.admin`       the admin console: accounts, overrides, audit log, sign-in throttle counters.
- :mod:`.chat`        chat conversations and their turns.

Nothing here imports Flask or the service layer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from plugin.store.admin import AdminRecords, ThrottleCounters
from plugin.store.analytics import Analytics
from plugin.store.chat import ChatStore
from plugin.store.db import Database
from plugin.store.health import Health
from plugin.store.inbox import Inbox
from plugin.store.incidents import Incidents
from plugin.store.mail import MailConversations
from plugin.store.migrations import MIGRATIONS
from plugin.store.suggestions import Suggestions

__all__ = ["Database", "Store", "migrate"]


def migrate(db: Database) -> list[str]:
    """Apply every migration the file does not have yet, in order; the ones applied now."""
    return [f"{m.name} v{m.version}" for m in MIGRATIONS if db.ensure_schema(m.name, m.version, m.ddl)]


@dataclass(frozen=True)
class Store:
    db: Database
    inbox: Inbox
    health: Health
    suggestions: Suggestions
    mail: MailConversations
    analytics: Analytics
    incidents: Incidents
    admin: AdminRecords
    throttle: ThrottleCounters
    chat: ChatStore

    @classmethod
    def open(cls, path: Path | str, *, clock: Callable[[], float] = time.time) -> Store:
        """The state file at ``path`` (created when missing), migrated to the current schema."""
        db = Database(path, clock=clock)
        migrate(db)
        return cls(db=db, inbox=Inbox(db), health=Health(db), suggestions=Suggestions(db),
                   mail=MailConversations(db), analytics=Analytics(db), incidents=Incidents(db),
                   admin=AdminRecords(db), throttle=ThrottleCounters(db), chat=ChatStore(db))

    @property
    def clock(self) -> Callable[[], float]:
        return self.db.clock

    def close(self) -> None:
        self.db.close()
