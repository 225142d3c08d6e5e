"""api/admin/throttle.py: failed logins per client address and per account, in a sliding window."""

from __future__ import annotations

import threading

import pytest

from api.admin.throttle import LoginThrottle, Throttled


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_failures_in_a_sliding_window_block_until_the_oldest_leaves_it():
    clock = Clock()
    throttle = LoginThrottle(max_failures=3, window_seconds=60, clock=clock)
    for clock.now in (0, 10, 20):
        throttle.start("198.51.100.1", "ana")  # never succeeded: three failures
    clock.now = 30
    with pytest.raises(Throttled) as refused:
        throttle.start("198.51.100.1", "bob")  # the address is blocked, whatever the account
    assert refused.value.retry_after == pytest.approx(30)  # the failure at 0 leaves the window at 60
    with pytest.raises(Throttled):
        throttle.start("203.0.113.9", "ana")  # the account is blocked, whatever the address
    throttle.start("203.0.113.9", "bob")  # neither is blocked

    clock.now = 60.5  # the first failure has left the window: one more attempt each
    throttle.start("198.51.100.1", "carl")
    clock.now = 61
    with pytest.raises(Throttled) as refused:
        throttle.start("198.51.100.1", "dora")
    assert refused.value.retry_after == pytest.approx(9)  # the failure at 10 leaves at 70
    clock.now = 200
    throttle.start("198.51.100.1", "ana")  # everything has left the window


def test_a_success_takes_its_attempt_back_and_clears_the_accounts_failures():
    throttle = LoginThrottle(max_failures=3, window_seconds=60, clock=Clock())
    throttle.start("198.51.100.1", "ana")
    throttle.start("198.51.100.2", "ana")
    throttle.succeeded(throttle.start("198.51.100.1", "ana"))
    # The account starts again from nothing; the first address keeps its one real failure.
    throttle.start("198.51.100.1", "ana")
    throttle.start("198.51.100.1", "ana")
    with pytest.raises(Throttled):
        throttle.start("198.51.100.1", "bob")
    throttle.start("198.51.100.3", "ana")
    with pytest.raises(Throttled):
        throttle.start("198.51.100.4", "ana")


def test_parallel_attempts_cannot_outrun_the_count():
    throttle = LoginThrottle(max_failures=5, window_seconds=900)
    allowed, start = [], threading.Barrier(20)

    def attempt() -> None:
        start.wait()
        try:
            throttle.start("198.51.100.1", "ana")
            allowed.append(1)
        except Throttled:
            pass

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(allowed) == 5


def test_its_memory_is_bounded():
    clock = Clock()
    throttle = LoginThrottle(max_failures=2, window_seconds=60, max_entries=100, clock=clock)
    for n in range(1000):
        clock.now = n / 100
        throttle.start(f"10.0.{n // 250}.{n % 250}", f"editor-{n}")
    assert len(throttle) <= 100
    clock.now = 1000  # all expired
    throttle.start("198.51.100.1", "ana")
    assert len(throttle) <= 100
