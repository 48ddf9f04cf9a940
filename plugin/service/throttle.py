"""Sign-in throttling: too many failures lock an account, and an address, for a while.

Two counters per attempt, one per account (the login as typed, case-folded, whether or not such an
account exists, so that a lock tells nothing about which logins are real) and one per client address
(an IPv6 address counts for its whole /64, which one machine usually holds). ``max_failures`` failures
of one counter within ``window_s`` (counted from the first) lock it for ``lock_s``. While locked, a
sign-in is refused before the password is checked, and is not counted (the lock ends when it said it
would). A success clears its account's counter, never the address's: an attacker who owns one account
cannot wash an address's failures away by signing in to it between guesses.

The price of a per-account lock is that anyone can lock an account by failing on purpose; ``lock_s``
bounds that, and the per-address counter stops one address from doing it to many accounts.

The state is small (a count, when the window began, until when locked, when it means nothing any more)
and lives behind :class:`ThrottleStore`, so that the database can hold it and every worker process
sees the same counters; :class:`MemoryThrottleStore` is the in-process one for tests and a single
process. Time is injected (``clock``), so tests move it instead of sleeping.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

from plugin.settings import SignInThrottleSettings


class ThrottleState(BaseModel):
    """One counter: an account's or an address's."""

    model_config = ConfigDict(frozen=True)

    failures: int = 0
    #: When the first failure of the current window happened.
    window_start: float = 0.0
    #: Refused until then (0: not locked).
    locked_until: float = 0.0
    #: After this the state means nothing: a store may delete it (see :meth:`ThrottleStore.purge`).
    expires_at: float = 0.0


#: Turns a key's state into its next one (None: no state, the key is clear).
Change = Callable[[ThrottleState | None], ThrottleState | None]


class ThrottleStore(Protocol):
    """Where the counters live. ``update`` must be atomic per key (a database does it in one transaction)."""

    def get(self, key: str) -> ThrottleState | None: ...

    def update(self, key: str, change: Change) -> ThrottleState | None:
        """Replace the key's state by ``change(state)`` as one step (None deletes it); return the new state."""
        ...

    def purge(self, now: float) -> int:
        """Delete the states that expired before ``now``; return how many."""
        ...


class MemoryThrottleStore:
    """Counters in a dict, behind a lock: for tests and a single process."""

    def __init__(self) -> None:
        self._states: dict[str, ThrottleState] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> ThrottleState | None:
        with self._lock:
            return self._states.get(key)

    def update(self, key: str, change: Change) -> ThrottleState | None:
        with self._lock:
            new = change(self._states.get(key))
            if new is None:
                self._states.pop(key, None)
            else:
                self._states[key] = new
            return new

    def purge(self, now: float) -> int:
        with self._lock:
            old = [k for k, s in self._states.items() if s.expires_at <= now]
            for k in old:
                del self._states[k]
            return len(old)

    def __len__(self) -> int:
        with self._lock:
            return len(self._states)


class ThrottleDecision(BaseModel):
    model_config = ConfigDict(frozen=True)

    allowed: bool
    #: Which counter refuses (the account's wins when both do).
    locked: Literal["account", "ip"] | None = None
    #: Seconds until the sign-in may be tried again (0 when allowed).
    retry_after_s: float = 0.0


def account_key(login: str) -> str:
    return "account:" + login.strip().casefold()


def ip_key(ip: str) -> str:
    """``ip:`` + the address; an IPv6 address stands for its /64, an IPv4-mapped one for the IPv4 address."""
    text = ip.strip()
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        # Not an address (a proxy's odd header): counted under its text, bounded, never trusted further.
        return "ip:?" + text[:64]
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return f"ip:{addr.ipv4_mapped}"
        return f"ip:{ipaddress.ip_network(f'{addr}/64', strict=False)}"
    return f"ip:{addr}"


class SignInThrottle:
    """The policy: ask :meth:`check` before checking a password, then report :meth:`failed` or :meth:`succeeded`."""

    def __init__(
        self,
        store: ThrottleStore,
        settings: SignInThrottleSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock

    def check(self, login: str, ip: str) -> ThrottleDecision:
        """May this sign-in be tried now? Changes nothing."""
        now = self.clock()
        counters: tuple[tuple[Literal["account", "ip"], str], ...] = (
            ("account", account_key(login)), ("ip", ip_key(ip)),
        )
        for locked, key in counters:
            state = self.store.get(key)
            if state is not None and state.locked_until > now:
                return ThrottleDecision(allowed=False, locked=locked, retry_after_s=state.locked_until - now)
        return ThrottleDecision(allowed=True)

    def failed(self, login: str, ip: str) -> ThrottleDecision:
        """Count a failed sign-in on both counters; return whether the next attempt is allowed."""
        now = self.clock()
        s = self.settings
        self.store.update(account_key(login), lambda state: self._count(state, now, s.account_max_failures))
        self.store.update(ip_key(ip), lambda state: self._count(state, now, s.ip_max_failures))
        return self.check(login, ip)

    def succeeded(self, login: str, ip: str) -> None:
        """A right password: clear the account's counter. ``ip`` is taken for symmetry and left alone on
        purpose: the address's failures stay (see the module)."""
        self.store.update(account_key(login), lambda state: None)

    def _count(self, state: ThrottleState | None, now: float, limit: int) -> ThrottleState:
        s = self.settings
        if state is not None and state.locked_until > now:
            return state  # attempts during a lock are refused unseen, not counted
        if state is None or now - state.window_start >= s.window_s:
            state = ThrottleState(failures=0, window_start=now)
        failures = state.failures + 1
        if failures >= limit:
            until = now + s.lock_s
            return ThrottleState(failures=0, window_start=now, locked_until=until, expires_at=until)
        return ThrottleState(
            failures=failures, window_start=state.window_start, expires_at=state.window_start + s.window_s
        )
