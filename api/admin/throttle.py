"""Login throttling: failed logins counted per client address and per account, in a sliding window.

A login costs a scrypt hash (~50 ms of CPU and 16 MiB), asked for by anyone: unthrottled, it lets
a guesser try passwords as fast as the server hashes them. After ``max_failures`` failures within
``window_seconds`` from one client address, or for one account, further attempts from that
address or for that account are refused (429 with Retry-After) before any password is hashed,
until the oldest of those failures leaves the window.

An attempt counts as a failure from the moment it starts: a burst of parallel guesses cannot all
get past the check before the first of them fails. A success takes its own attempt back and
clears the account's failures (not the address's: a guesser with an account of their own must
not be able to wipe the count of the address they guess from).

The counts live in the process: with several workers each keeps its own (so a guesser gets up to
``workers * max_failures`` attempts a window), and a restart forgets them. Memory is bounded:
at most ``max_failures`` times a window are kept per address or account, and at most
``max_entries`` addresses and accounts (the least recently failed are forgotten first).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

Key = tuple[str, str]  # ("client", address) or ("account", username)


class Throttled(Exception):
    """Too many failed logins: try again in ``retry_after`` seconds."""

    def __init__(self, retry_after: float):
        super().__init__(f"too many failed logins; retry in {retry_after:.0f} s")
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Attempt:
    """A login attempt let through (and counted as a failure until it ``succeeded``)."""

    client: Key
    account: Key
    at: float


class LoginThrottle:
    def __init__(self, max_failures: int = 5, window_seconds: float = 15 * 60.0, *,
                 max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic):
        self.max_failures = max_failures
        self.window = window_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._failures: OrderedDict[Key, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._failures)

    def start(self, client: str, account: str) -> Attempt:
        """Let an attempt through and count it, or raise ``Throttled`` (nothing counted)."""
        keys = ("client", client), ("account", account)
        with self._lock:
            now = self._clock()
            wait = max(self._wait(key, now) for key in keys)
            if wait > 0:
                raise Throttled(wait)
            for key in keys:
                self._count(key, now)
            return Attempt(keys[0], keys[1], now)

    def succeeded(self, attempt: Attempt) -> None:
        with self._lock:
            failures = self._failures.get(attempt.client)
            if failures is not None and attempt.at in failures:
                failures.remove(attempt.at)
            self._failures.pop(attempt.account, None)

    def _wait(self, key: Key, now: float) -> float:
        """Seconds until ``key`` may try again (0: now)."""
        failures = self._failures.get(key)
        if failures is None:
            return 0.0
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return 0.0
        # At most max_failures are kept: when that many are in the window, the oldest leaving
        # it lets the next attempt through.
        return failures[0] + self.window - now if len(failures) >= self.max_failures else 0.0

    def _count(self, key: Key, now: float) -> None:
        failures = self._failures.get(key)
        if failures is None:
            if len(self._failures) >= self.max_entries:
                self._forget(now)
            failures = self._failures[key] = deque(maxlen=self.max_failures)
        else:
            self._failures.move_to_end(key)
        failures.append(now)

    def _forget(self, now: float) -> None:
        """Room for a new key: drop the expired ones, then the least recently failed. Keys are
        kept in the order of their last failure, so the expired ones come first."""
        while self._failures:
            failures = next(iter(self._failures.values()))
            if failures and failures[-1] > now - self.window:
                break
            self._failures.popitem(last=False)
        while len(self._failures) >= self.max_entries:
            self._failures.popitem(last=False)
