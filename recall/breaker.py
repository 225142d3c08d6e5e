"""A circuit breaker in front of one Redis server, so that an outage costs a request nothing.

Every connection of a client shares one ``Breaker``. A connection error or timeout counts as a
failure; after ``threshold`` failures in a row the breaker opens, and for ``cooldown`` seconds
no connection is even attempted: commands fail at once with ``CircuitOpen`` (a
``redis.ConnectionError``, so every caller's existing degrade path takes it). After the
cooldown one caller probes; a success closes the breaker, a failure opens it again. The
client itself never retries (redis-py's default retries turned a dead Redis into 12 s requests).
"""

from __future__ import annotations

import threading
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


class CircuitOpen(redis.ConnectionError):
    pass


class Breaker:
    def __init__(self, threshold: int = 3, cooldown: float = 1.0):
        self.threshold = threshold
        self.cooldown = cooldown
        self.failures = 0  # in a row
        self.opened_at: float | None = None
        # Counters for metrics and tests: connection attempts made, calls refused while open,
        # and how many times the breaker opened.
        self.attempts = 0
        self.refused = 0
        self.openings = 0
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None

    def allow(self) -> bool:
        """Whether a connection may be attempted now (one probe per cooldown while open)."""
        with self._lock:
            if self.opened_at is None:
                self.attempts += 1
                return True
            if time.monotonic() - self.opened_at >= self.cooldown:
                self.opened_at = time.monotonic()  # this caller probes; the others wait a cooldown
                self.attempts += 1
                return True
            self.refused += 1
            return False

    def success(self) -> None:
        if self.failures or self.opened_at is not None:
            with self._lock:
                self.failures, self.opened_at = 0, None

    def failure(self) -> None:
        with self._lock:
            self.failures += 1
            if self.failures >= self.threshold and self.opened_at is None:
                self.opened_at = time.monotonic()
                self.openings += 1
            elif self.opened_at is not None:
                self.opened_at = time.monotonic()


def breaker_connection(breaker: Breaker) -> type[redis.Connection]:
    """A connection class whose instances report to ``breaker`` and respect it."""

    class BreakerConnection(redis.Connection):
        def connect(self):
            if self._sock:
                return
            if not breaker.allow():
                raise CircuitOpen(f"Redis circuit open after {breaker.failures} failures; "
                                  f"next probe within {breaker.cooldown:g} s")
            try:
                super().connect()
            except (redis.ConnectionError, redis.TimeoutError):
                breaker.failure()
                raise

        def read_response(self, *args, **kwargs):
            try:
                response = super().read_response(*args, **kwargs)
            except (redis.ConnectionError, redis.TimeoutError):
                breaker.failure()
                raise
            breaker.success()
            return response

    return BreakerConnection


def guarded_client(url: str, timeout: float, breaker: Breaker) -> redis.Redis:
    """A client for ``url`` with short timeouts, no retries and ``breaker`` in front."""
    pool = redis.ConnectionPool.from_url(
        url, connection_class=breaker_connection(breaker), socket_timeout=timeout,
        socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0), health_check_interval=0)
    client = redis.Redis(connection_pool=pool)
    client.breaker = breaker
    return client
