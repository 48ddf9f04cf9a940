"""Intake: accepted ticket events into the durable inbox, before the helpdesk gets its 2xx.

The web layer hands verified webhook events here and turns the answer into its own reply: a
:class:`StoreUnavailable` becomes a 503 (the helpdesk retries), so nothing accepted is ever lost.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from connectors.base import TicketEvent
from helpdesk_errors import HelpdeskError


@dataclass(frozen=True)
class IntakeResult:
    new: int
    duplicates: int


class StoreUnavailable(HelpdeskError):
    """The inbox could not store the events (disk full, the database locked past its timeout)."""


def accept_events(enqueue: Callable[[TicketEvent], bool], events: Iterable[TicketEvent]) -> IntakeResult:
    """Persist every event (``enqueue`` answers True for a new one, False for a replay)."""
    new = dup = 0
    try:
        for event in events:
            if enqueue(event):
                new += 1
            else:
                dup += 1
    except sqlite3.Error as e:
        raise StoreUnavailable(f"inbox unavailable: {e}") from e
    return IntakeResult(new=new, duplicates=dup)
