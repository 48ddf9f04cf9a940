"""The worker: takes inbox items with a lease, runs their handler, retries, parks, polls.

One loop (a thread inside ``serve``, or ``helpdesk-assist worker`` processes, any number of them):

1. take the oldest available item (:meth:`plugin.store.inbox.Inbox.claim`) and call the handler for its kind,
   extending the item's lease every third of ``lease_s`` while the handler runs (a heartbeat
   thread), so that a long item (a slow helpdesk, a write being read back) is never taken by a
   second worker while the first still works on it;
2. success -> done; a transient failure -> pending again after an exponential backoff capped at
   ``backoff_max_s``, for ``retry_for_s`` (a day by default) after the item's first failure, then
   dead (``gave_up``: a poll that sees the ticket again revives it); a permanent failure -> dead at
   once with the reason;
3. between items and when the inbox is empty: run the pollers that are due and, once an hour, purge
   done items (their delivery keys are kept longer, see :meth:`plugin.store.inbox.Inbox.purge_done`); when the
   inbox is empty wait ``idle_poll_s`` or until :meth:`Worker.wake` (the webhook endpoint calls it).

A worker that dies while handling leaves its item leased; once the lease runs out another worker
takes it again (a *lost lease*; after ``max_attempts`` of them the item is parked as dead: it keeps
killing its workers). Handlers are therefore called at least once and must be idempotent.

Connection health: a transient :class:`~connectors.base.ConnectorError` from an item of a source
(or from its poller) records that the source is failing, with the time of the first failure of
the streak; the next success clears it (``/healthz`` and ``status`` show it).

Classification of what a handler raises:

- :class:`RetryLater`, or any exception with ``transient = True`` (e.g.
  ``connectors.base.TransientConnectorError``): retried (``RetryLater.delay_s`` or the backoff);
- :class:`PermanentFailure`, or another :class:`HelpdeskError`: dead at once, ``"<Class>: message"``;
- anything else is a bug: logged with its stack and retried like a transient error, so that an item
  hit by a bug recovers after the fix is deployed (or goes dead after ``retry_for_s``).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connectors.base import ConnectorError
from helpdesk_errors import HelpdeskError
from plugin.store import Store
from plugin.store.inbox import InboxItem

log = logging.getLogger(__name__)

Handler = Callable[[InboxItem], None]

#: Watermarks of the pollers are stored under this prefix + the job's name.
WATERMARK_PREFIX = "poll:"

#: How often done items are purged (by the worker's clock).
PURGE_INTERVAL_S = 3600.0
#: A handler that runs longer than this no longer gets its lease extended: it is hung (every
#: helpdesk, mail and LLM call has its own timeout), and another worker may take the item.
MAX_HOLD_S = 3600.0


class RetryLater(HelpdeskError):
    """A handler's transient failure: try the item again later (after ``delay_s`` when given)."""

    transient = True

    def __init__(self, message: str = "", *, delay_s: float | None = None) -> None:
        super().__init__(message)
        self.delay_s = delay_s


class PermanentFailure(HelpdeskError):
    """A handler's permanent failure: the item goes dead with this message, not retried."""

    transient = False


@dataclass(frozen=True)
class PollJob:
    """A source polled every ``interval_s`` seconds while the worker is idle.

    ``poll(watermark)`` returns the new events and the new watermark; ``enqueue(event)`` persists
    one event (the inbox de-duplicates on delivery keys). The watermark is stored only after every
    event of a run was enqueued, so a crash in between polls the same window again.
    """

    name: str
    poll: Callable[[str | None], tuple[list[Any], str | None]]
    interval_s: float
    enqueue: Callable[[Any], object]

    @property
    def watermark_name(self) -> str:
        return WATERMARK_PREFIX + self.name


def default_owner() -> str:
    """A lease owner id unique to this worker: host, process and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def is_transient(exc: BaseException) -> bool:
    return bool(getattr(exc, "transient", False))


def describe(exc: BaseException) -> str:
    """``"<ExceptionClass>: message"``, what is stored with the item and shown to the admin."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Waker:
    """What an enqueuer calls to cut a worker's idle wait short: made before the worker, so that the
    flows that enqueue and the worker that handles can be built in either order."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def wake(self) -> None:
        self.event.set()


class Worker:
    def __init__(
        self,
        store: Store,
        handlers: Mapping[str, Handler],
        *,
        owner: str | None = None,
        lease_s: float = 120.0,
        max_attempts: int = 8,
        backoff_base_s: float = 2.0,
        backoff_max_s: float = 900.0,
        retry_for_s: float = 24 * 3600.0,
        idle_poll_s: float = 1.0,
        pollers: Sequence[PollJob] = (),
        purge_done_after_s: float | None = 7 * 86_400.0,
        keep_delivery_keys_s: float = 90 * 86_400.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
        waker: Waker | None = None,
    ) -> None:
        """``max_attempts`` bounds lost leases (workers that died on the item), ``retry_for_s`` the
        time a failing item is retried; ``purge_done_after_s`` None: never purge.
        ``clock`` schedules the pollers and the purge (the store has its own clock for leases and
        delays); ``sleep`` replaces the idle wait (tests; by default the wait ends early on
        :meth:`wake`); ``rng`` draws the backoff jitter; ``waker`` is shared with the enqueuers
        (default: one of its own)."""
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if retry_for_s <= 0:
            raise ValueError("retry_for_s must be positive")
        self.store = store
        self.handlers = dict(handlers)
        self.owner = owner or default_owner()
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.retry_for_s = retry_for_s
        self.idle_poll_s = idle_poll_s
        self.purge_done_after_s = purge_done_after_s
        self.keep_delivery_keys_s = max(keep_delivery_keys_s, purge_done_after_s or 0.0)
        self.pollers = list(pollers)
        self.clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.waker = waker or Waker()
        self._wake = self.waker.event
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_poll: dict[str, float] = {}
        self._next_purge = float("-inf")
        #: True while :meth:`run` loops (in a thread of this process or in the foreground).
        self.running = False

    # -- one item ------------------------------------------------------------------------------------
    def run_once(self) -> bool:
        """Take one available item and handle it; False when there was none."""
        item = self.store.inbox.claim(self.owner, self.lease_s)
        if item is None:
            return False
        if item.lost_leases >= self.max_attempts:
            # The workers handling it kept dying (or hanging past their lease): do not run it again.
            reason = f"gave up after {item.attempts - 1} attempts: the worker handling it stopped or lost its lease"
            if item.last_error:
                reason += f" (last error: {item.last_error})"
            self._dead(item, reason)
            return True
        handler = self.handlers.get(item.kind)
        if handler is None:
            self._dead(item, f"no handler for kind {item.kind}")
            return True
        heartbeat = _Heartbeat(self.store, item.id, self.owner, self.lease_s)
        try:
            with heartbeat:
                handler(item)
        except Exception as e:  # noqa: BLE001 - every failure is classified; bugs are logged with their stack
            self._failed(item, e)
        else:
            self._done(item)
        return True

    def backoff_s(self, attempts: int) -> float:
        """Delay after the ``attempts``-th failed attempt: base * 2**(attempts-1), capped, +/-20 %."""
        raw = self.backoff_base_s * 2.0 ** min(max(attempts - 1, 0), 62)
        return min(raw, self.backoff_max_s) * self._rng.uniform(0.8, 1.2)

    def _done(self, item: InboxItem) -> None:
        self._note_success(item.source)
        if self.store.inbox.complete(item.id, self.owner):
            log.info("inbox_item_done id=%s kind=%s attempts=%s", item.id, item.kind, item.attempts,
                     extra={"event": "inbox_item_done", "item_id": item.id})
        else:
            log.warning("inbox_item_lease_lost id=%s kind=%s attempts=%s: handled, but another worker holds it now",
                        item.id, item.kind, item.attempts, extra={"event": "inbox_item_lease_lost", "item_id": item.id})

    def _failed(self, item: InboxItem, exc: Exception) -> None:
        reason = describe(exc)
        if isinstance(exc, HelpdeskError) and not is_transient(exc):
            self._dead(item, reason)
            return
        if not is_transient(exc):
            log.exception("inbox_item_error id=%s kind=%s attempts=%s: unexpected error in the handler",
                          item.id, item.kind, item.attempts, extra={"event": "inbox_item_error", "item_id": item.id})
        elif isinstance(exc, ConnectorError):
            self._note_failure(item.source, reason)
        now = self.store.clock()
        failing_for = now - (item.failing_since if item.failing_since is not None else now)
        if failing_for >= self.retry_for_s:
            self._dead(item, f"gave up after {item.attempts} attempts over {failing_for / 3600:.1f} h: {reason}",
                       gave_up=True)
            return
        delay = exc.delay_s if isinstance(exc, RetryLater) and exc.delay_s is not None else None
        delay_s = self.backoff_s(item.attempts) if delay is None else delay
        if self.store.inbox.retry_later(item.id, self.owner, reason, delay_s):
            log.warning("inbox_item_retry id=%s kind=%s attempts=%s delay_s=%.1f: %s",
                        item.id, item.kind, item.attempts, delay_s, reason,
                        extra={"event": "inbox_item_retry", "item_id": item.id})
        else:
            self._lease_lost(item)

    def _dead(self, item: InboxItem, reason: str, *, gave_up: bool = False) -> None:
        if self.store.inbox.bury(item.id, self.owner, reason, gave_up=gave_up):
            log.error("inbox_item_dead id=%s kind=%s attempts=%s: %s", item.id, item.kind, item.attempts, reason,
                      extra={"event": "inbox_item_dead", "item_id": item.id})
        else:
            self._lease_lost(item)

    def _lease_lost(self, item: InboxItem) -> None:
        log.warning("inbox_item_lease_lost id=%s kind=%s attempts=%s: another worker holds it now",
                    item.id, item.kind, item.attempts, extra={"event": "inbox_item_lease_lost", "item_id": item.id})

    # -- connection health ---------------------------------------------------------------------------
    def _note_failure(self, source: str, reason: str) -> None:
        try:
            self.store.health.note_failure(source, reason)
        except Exception:  # health bookkeeping never fails an item
            log.exception("health_update_failed source=%s", source, extra={"event": "health_update_failed"})

    def _note_success(self, source: str) -> None:
        try:
            self.store.health.note_success(source)
        except Exception:  # health bookkeeping never fails an item
            log.exception("health_update_failed source=%s", source, extra={"event": "health_update_failed"})

    # -- pollers -------------------------------------------------------------------------------------
    def run_due_pollers(self) -> int:
        """Run every poller whose interval has passed; how many events they enqueued."""
        total = 0
        for job in self.pollers:
            now = self.clock()
            if now < self._next_poll.get(job.name, float("-inf")):
                continue
            self._next_poll[job.name] = now + job.interval_s
            total += self.run_poller(job)
        return total

    def run_poller(self, job: PollJob) -> int:
        """Poll once, enqueue the events, then store the new watermark. Never raises an Exception."""
        try:
            since = self.store.inbox.get_watermark(job.watermark_name)
            events, watermark = job.poll(since)
            for event in events:
                job.enqueue(event)
            if watermark is not None and watermark != since:
                self.store.inbox.set_watermark(job.watermark_name, watermark)
        except Exception as e:
            if is_transient(e):
                log.warning("poll_failed poller=%s: %s; retried in %.0f s", job.name, describe(e), job.interval_s,
                            extra={"event": "poll_failed", "poller": job.name})
                if isinstance(e, ConnectorError):
                    self._note_failure(job.name, describe(e))
            else:
                log.exception("poll_failed poller=%s: %s; retried in %.0f s", job.name, describe(e), job.interval_s,
                              extra={"event": "poll_failed", "poller": job.name})
            return 0
        self._note_success(job.name)
        if events:
            log.info("poll_done poller=%s events=%s", job.name, len(events),
                     extra={"event": "poll_done", "poller": job.name})
        return len(events)

    # -- housekeeping --------------------------------------------------------------------------------
    def run_due_purge(self) -> int:
        """Once every :data:`PURGE_INTERVAL_S`: delete done items older than ``purge_done_after_s``
        (their keys kept) and forget keys older than ``keep_delivery_keys_s``; how many items went."""
        if self.purge_done_after_s is None:
            return 0
        now = self.clock()
        if now < self._next_purge:
            return 0
        self._next_purge = now + PURGE_INTERVAL_S
        try:
            items = self.store.inbox.purge_done(self.purge_done_after_s)
            keys = self.store.inbox.purge_delivery_keys(self.keep_delivery_keys_s)
        except Exception:  # tried again at the next interval
            log.exception("inbox_purge_failed", extra={"event": "inbox_purge_failed"})
            return 0
        if items or keys:
            log.info("inbox_purged items=%s keys=%s", items, keys, extra={"event": "inbox_purged"})
        return items

    # -- loop ----------------------------------------------------------------------------------------
    def wake(self) -> None:
        """Cut the idle wait short: something was just enqueued."""
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        """Handle items until ``stop`` is set. A failing item or poller never ends the loop."""
        log.info("worker_started owner=%s", self.owner, extra={"event": "worker_started"})
        self.running = True
        try:
            self._loop(stop)
        finally:
            self.running = False
        log.info("worker_stopped owner=%s", self.owner, extra={"event": "worker_stopped"})

    def _loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                processed = self.run_once()
            except Exception:
                # The store itself failed (disk full, lock held past the busy timeout): wait, go on.
                log.exception("worker_loop_error owner=%s", self.owner, extra={"event": "worker_loop_error"})
                processed = False
            if stop.is_set():
                break
            # Due pollers run between items too, so that a long backlog does not starve them.
            self.run_due_pollers()
            self.run_due_purge()
            if not processed:
                self._idle_wait()

    def _idle_wait(self) -> None:
        if self._sleep is not None:
            self._sleep(self.idle_poll_s)
        else:
            self._wake.wait(self.idle_poll_s)
        self._wake.clear()

    def start_thread(self, name: str = "helpdesk-worker") -> threading.Thread:
        """Run the loop in a daemon thread (``serve``'s embedded worker)."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("the worker thread is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, args=(self._stop,), name=name, daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float | None = 10.0) -> bool:
        """Ask the thread to stop after its current item; True when it has stopped."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()


class _Heartbeat:
    """While the handler runs: extend the item's lease every third of ``lease_s`` (a thread), for
    at most :data:`MAX_HOLD_S`. A worker that dies stops its heartbeat with it, so the lease still
    runs out after a crash."""

    def __init__(self, store: Store, item_id: int, owner: str, lease_s: float) -> None:
        self.store = store
        self.item_id = item_id
        self.owner = owner
        self.lease_s = lease_s
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _Heartbeat:
        self._thread = threading.Thread(target=self._run, name=f"lease-{self.item_id}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        interval = max(self.lease_s / 3.0, 0.05)
        give_up_at = time.monotonic() + MAX_HOLD_S
        while not self._done.wait(interval):
            if time.monotonic() > give_up_at:
                log.error("inbox_item_hung id=%s owner=%s: handled for more than %.0f s; the lease is no longer "
                          "extended", self.item_id, self.owner, MAX_HOLD_S,
                          extra={"event": "inbox_item_hung", "item_id": self.item_id})
                return
            try:
                held = self.store.inbox.extend_lease(self.item_id, self.owner, self.lease_s)
            except Exception:  # the next beat tries again; the lease has slack
                log.exception("lease_extend_failed id=%s", self.item_id, extra={"event": "lease_extend_failed"})
                continue
            if not held:
                log.warning("inbox_item_lease_lost id=%s owner=%s: lost while the item was being worked",
                            self.item_id, self.owner, extra={"event": "inbox_item_lease_lost", "item_id": self.item_id})
                return
