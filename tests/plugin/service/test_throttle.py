"""The sign-in throttle: per account and per address, with a clock the tests move."""

from __future__ import annotations

import threading

import pytest

from plugin.service.throttle import (
    MemoryThrottleStore,
    SignInThrottle,
    ThrottleState,
    account_key,
    ip_key,
)
from plugin.settings import SignInThrottleSettings


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(clock: Clock, **settings: float) -> SignInThrottle:
    s = SignInThrottleSettings(**{"account_max_failures": 3, "ip_max_failures": 5, "window_s": 60, "lock_s": 300,
                                  **settings})
    return SignInThrottle(MemoryThrottleStore(), s, clock=clock)


def test_account_locks_after_n_failures_then_unlocks_when_the_lock_ends(clock):
    t = make(clock)
    for _ in range(2):
        assert t.failed("alice", "10.0.0.1").allowed
    third = t.failed("alice", "10.0.0.1")
    assert not third.allowed and third.locked == "account" and third.retry_after_s == 300
    # Locked even with the right password: the caller asks check() first and never gets to it.
    clock.now += 299
    d = t.check("alice", "10.0.0.2")
    assert not d.allowed and d.locked == "account" and d.retry_after_s == pytest.approx(1)
    clock.now += 1
    assert t.check("alice", "10.0.0.2").allowed


def test_failures_outside_the_window_do_not_add_up(clock):
    t = make(clock)
    for i in range(5):
        assert t.failed("alice", f"10.0.0.{i}").allowed
        clock.now += 31  # two failures at most within any 60 s window
    assert t.check("alice", "10.0.0.9").allowed


def test_attempts_during_a_lock_are_not_counted_and_do_not_extend_it(clock):
    t = make(clock)
    for _ in range(3):
        t.failed("alice", "10.0.0.1")
    clock.now += 100
    for i in range(10):
        t.failed("alice", f"10.0.1.{i}")  # a caller that forgot check(): still not counted
    clock.now += 200
    assert t.check("alice", "10.0.2.1").allowed


def test_success_clears_the_account_but_not_the_address(clock):
    t = make(clock)
    t.failed("alice", "10.0.0.1")
    t.failed("alice", "10.0.0.1")
    t.succeeded("alice", "10.0.0.1")
    t.failed("alice", "10.0.0.1")
    t.failed("alice", "10.0.0.1")
    assert t.check("alice", "10.0.0.1").allowed  # 2 failures since the success, not 4
    # The address kept all four: one more failure on any account locks it (limit 5).
    d = t.failed("bob", "10.0.0.1")
    assert not d.allowed and d.locked == "ip"
    assert t.check("carol", "10.0.0.1").locked == "ip"
    assert t.check("carol", "10.0.0.2").allowed


def test_one_address_guessing_many_accounts_is_locked_other_addresses_are_not(clock):
    t = make(clock)
    for i in range(5):
        t.failed(f"user{i}", "192.0.2.7")
    assert t.check("someone-else", "192.0.2.7").locked == "ip"
    assert t.check("user0", "192.0.2.8").allowed  # each account failed once only


def test_login_is_case_folded_and_stripped(clock):
    t = make(clock)
    t.failed("Alice", "10.0.0.1")
    t.failed(" alice ", "10.0.0.2")
    t.failed("ALICE", "10.0.0.3")
    assert t.check("alice", "10.0.0.4").locked == "account"
    assert account_key("Straße") == account_key("STRASSE")


@pytest.mark.parametrize("a, b, same", [
    ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9", True),   # one /64
    ("2001:db8:1:2::1", "2001:db8:1:3::1", False),
    ("::ffff:192.0.2.1", "192.0.2.1", True),              # IPv4-mapped
    ("192.0.2.1", "192.0.2.2", False),
    (" 192.0.2.1", "192.0.2.1", True),
])
def test_address_keys(a, b, same):
    assert (ip_key(a) == ip_key(b)) is same


def test_odd_address_text_is_counted_not_trusted():
    assert ip_key("not-an-ip") == "ip:?not-an-ip"
    assert len(ip_key("x" * 10_000)) < 80


def test_ipv6_neighbours_share_one_counter(clock):
    t = make(clock)
    for i in range(5):
        t.failed(f"user{i}", f"2001:db8:1:2::{i + 1}")
    assert t.check("other", "2001:db8:1:2::abcd").locked == "ip"
    assert t.check("other", "2001:db8:1:99::1").allowed


def test_expired_states_are_purged(clock):
    store = MemoryThrottleStore()
    t = SignInThrottle(store, SignInThrottleSettings(account_max_failures=3, ip_max_failures=5, window_s=60,
                                                     lock_s=300), clock=clock)
    t.failed("alice", "10.0.0.1")
    for _ in range(3):
        t.failed("bob", "10.0.0.2")
    assert len(store) == 4
    clock.now += 61
    # The windows of alice, 10.0.0.1 and 10.0.0.2 (3 failures, under its limit of 5) ended; bob is locked.
    assert store.purge(clock.now) == 3
    assert not t.check("bob", "10.0.0.3").allowed
    clock.now += 300
    assert store.purge(clock.now) == 1
    assert len(store) == 0


def test_memory_store_updates_are_atomic():
    store = MemoryThrottleStore()

    def bump(state: ThrottleState | None) -> ThrottleState:
        return ThrottleState(failures=(state.failures if state else 0) + 1)

    def worker() -> None:
        for _ in range(500):
            store.update("k", bump)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    state = store.get("k")
    assert state is not None and state.failures == 4000
