"""What every request shares and no request waits for: hot counts, the fresh list, hidden items.

A ``LiveSnapshot`` holds, as arrays over catalog rows, the clicks and impressions of each hot
window the routes and the scorer use, the newest active articles and the articles editors hid
since the build. ``LiveState`` makes one from Redis in one pipelined round trip and keeps it:

* serving (``start``): a background thread refreshes it about once a second; a request takes
  the current snapshot and never touches Redis for it. If Redis does not answer, the last
  snapshot keeps serving.
* replay and tests (no thread): ``get(now)`` refreshes when ``now`` enters a new minute of
  event time, as a replay moves through the data faster than any clock.

Either way, events and articles this process records are added to the snapshot at once
(``count``, ``publish``, ``hide``), so the process that took a click sees it on its next request.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import redis

from recall.catalog import ItemCatalog
from recall.domain import HISTORY_SOURCE, EventRecord, to_unix
from recall.online import WHOLE_MARKER, zset_reply

log = logging.getLogger(__name__)

FRESH_DEPTH = 1000  # newest articles kept; the fresh route's quota is a tenth of it
RESYNC_SECONDS = 300.0  # every bucket of every window re-read this often


@dataclass(slots=True)
class WindowCounts:
    """Clicks and impressions per catalog row over one window of event time."""

    hours: float
    clicks: np.ndarray  # float32 per row; rows past the end count 0
    impressions: np.ndarray
    # The catalog's publish times when counted: equally clicked articles rank newest first.
    published: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    _orders: dict[bool, np.ndarray] = field(default_factory=dict)  # by clicks (True) or impressions
    _totals: tuple[float, float] | None = None  # (mean CTR, log1p(max clicks)), computed once

    @classmethod
    def empty(cls, hours: float) -> WindowCounts:
        return cls(hours, np.zeros(0, np.float32), np.zeros(0, np.float32))

    @staticmethod
    def _at(column: np.ndarray, rows: np.ndarray) -> np.ndarray:
        out = np.zeros(len(rows), np.float32)
        inside = rows < len(column)
        out[inside] = column[rows[inside]]
        return out

    def clicks_at(self, rows: np.ndarray) -> np.ndarray:
        return self._at(self.clicks, rows)

    def ctr_at(self, rows: np.ndarray, prior_clicks: float = 1.0, prior_impressions: float = 20.0) -> np.ndarray:
        """Smoothed click-through rate; the prior (1 in 20) keeps rare items from ranking top."""
        return (self.clicks_at(rows) + prior_clicks) / (self._at(self.impressions, rows) + prior_impressions)

    def _computed_totals(self) -> tuple[float, float]:
        totals = self._totals
        if totals is None:
            totals = self._totals = (
                (float(self.clicks.sum()) + 1.0) / (float(self.impressions.sum()) + 20.0),
                math.log1p(float(self.clicks.max())) if len(self.clicks) else 0.0)
        return totals

    def mean_ctr(self) -> float:
        return self._computed_totals()[0]

    def max_log_clicks(self) -> float:
        return self._computed_totals()[1]

    def order(self, clicks: bool = True) -> np.ndarray:
        """Rows with clicks (or, ``clicks=False``, with impressions), most counted first; equal
        counts (common: counts are small integers), the newest article first."""
        order = self._orders.get(clicks)
        if order is None:
            column = self.clicks if clicks else self.impressions
            counted = np.flatnonzero(column > 0)
            published = np.full(len(counted), -np.inf)
            known = counted < len(self.published)
            published[known] = self.published[counted[known]]
            order = self._orders[clicks] = counted[np.lexsort((-published, -column[counted]))].astype(np.int32)
        return order

    def add(self, rows: np.ndarray, clicks: bool) -> None:
        column = self.clicks if clicks else self.impressions
        if len(rows) and rows.max() >= len(column):
            size = max(int(rows.max()) + 1, 2 * len(column))
            self.clicks = np.pad(self.clicks, (0, size - len(self.clicks)))
            self.impressions = np.pad(self.impressions, (0, size - len(self.impressions)))
            column = self.clicks if clicks else self.impressions
        np.add.at(column, rows, 1.0)
        self._totals = None
        self._orders.pop(clicks, None)


@dataclass(slots=True)
class LiveSnapshot:
    taken_at: float  # the (event) time whose windows it counts
    windows: dict[float, WindowCounts] = field(default_factory=dict)
    fresh_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # newest first
    fresh_times: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    hidden_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # sorted

    def window(self, hours: float) -> WindowCounts:
        return self.windows.get(hours) or WindowCounts.empty(hours)


class LiveState:
    def __init__(self, online, catalog: ItemCatalog, windows: Iterable[float] = ()):
        self.online = online
        self.catalog = catalog
        self.windows: set[float] = {float(h) for h in windows}
        self.errors = 0  # refreshes Redis did not answer
        self.stale = False  # the last refresh failed: serving an older snapshot
        self._snapshot: LiveSnapshot | None = None
        self._buckets: dict[int, tuple] = {}  # bucket -> ((rows, clicks), (rows, impressions))
        self._synced_at = -np.inf
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- reading -------------------------------------------------------------------------
    def get(self, now: float) -> LiveSnapshot:
        snapshot = self._snapshot
        if snapshot is not None and (self._thread is not None or int(snapshot.taken_at // 60) == int(now // 60)):
            return snapshot
        return self.refresh(now)

    def want(self, windows: Iterable[float]) -> None:
        """Count these windows too (a route config asked for a new one): counted from the next
        refresh, at once when no thread refreshes."""
        new = {float(h) for h in windows} - self.windows
        if new:
            self.windows |= new
            self._snapshot = None if self._thread is None else self._snapshot

    def refresh(self, now: float) -> LiveSnapshot:
        """Read hot windows, fresh and hidden from Redis in one pipeline; on failure keep the
        previous snapshot (an empty one at first).

        A window is the sum of its 10-minute buckets, and a bucket no longer changes once its
        time has passed: each refresh reads only the buckets it does not hold yet and the last
        two (events arrive a little late), and every ``RESYNC_SECONDS`` all of them (late
        deliveries, a nightly recount). Reading whole windows each second cost 230-550 ms per
        refresh on a 100k-article world, most of it Redis' ZUNION blocking every other client.
        """
        online, catalog = self.online, self.catalog
        windows = sorted(self.windows)
        spans = {hours: online.window_buckets(now, hours) for hours in windows}
        needed = sorted({b for span in spans.values() for b in span})
        current = online.bucket(now)
        # Without the background thread (a replay, whose clock jumps) every refresh reads all.
        resync = self._thread is None or now - self._synced_at >= RESYNC_SECONDS or now < self._synced_at
        wanted = [b for b in needed if resync or b not in self._buckets or b >= current - 1]
        pipe = online.raw_pipeline()
        for b in wanted:
            pipe.zrange(online.k("hot", "c", b), 0, -1, withscores=True)
            pipe.zrange(online.k("hot", "i", b), 0, -1, withscores=True)
        pipe.zrevrangebyscore(online.k("fresh"), now, "-inf", start=0, num=FRESH_DEPTH, withscores=True)
        pipe.smembers(online.k("hidden"))
        pipe.exists(online.k(WHOLE_MARKER))
        try:
            *replies, whole = pipe.execute()
        except redis.RedisError as exc:
            self.errors += 1
            return self._keep(now, f"Redis did not answer: {exc}")
        if not whole and self._snapshot is not None:
            # Redis came back empty and is being rebuilt from SQL: yesterday's counts beat none.
            return self._keep(now, "Redis lost its state")
        buckets = {b: self._buckets[b] for b in needed if b in self._buckets}
        for n, b in enumerate(wanted):
            buckets[b] = tuple(self._sparse(replies[2 * n + k]) for k in (0, 1))
        self._buckets = buckets
        if resync:
            self._synced_at = now
        snapshot = LiveSnapshot(now)
        size = len(catalog)
        for hours, span in spans.items():
            parts = [buckets[b] for b in span if b in buckets]
            snapshot.windows[hours] = WindowCounts(
                hours, *(self._summed([p[k] for p in parts], size) for k in (0, 1)), catalog.published)
        fresh_ids, snapshot.fresh_times = zset_reply(replies[2 * len(wanted)])
        snapshot.fresh_rows = catalog.ensure(fresh_ids)
        snapshot.hidden_rows = np.unique(catalog.ensure([m.decode() for m in replies[-1]]))
        with self._lock:
            self._snapshot, self.stale = snapshot, False
        return snapshot

    def _sparse(self, reply) -> tuple[np.ndarray, np.ndarray]:
        members, scores = zset_reply(reply)
        return self.catalog.ensure(members), scores.astype(np.float32)

    @staticmethod
    def _summed(parts: list[tuple[np.ndarray, np.ndarray]], size: int) -> np.ndarray:
        if not parts:
            return np.zeros(size, np.float32)
        rows = np.concatenate([r for r, _ in parts])
        size = max(size, int(rows.max()) + 1) if len(rows) else size
        return np.bincount(rows, weights=np.concatenate([c for _, c in parts]), minlength=size).astype(np.float32)

    def _keep(self, now: float, why: str) -> LiveSnapshot:
        """Go on serving the last snapshot (an empty one if there is none yet)."""
        self.stale = True
        log.warning("live snapshot not refreshed: %s", why)
        if self._snapshot is None:
            self._snapshot = LiveSnapshot(now, {h: WindowCounts.empty(h) for h in sorted(self.windows)})
        return self._snapshot

    # ---- what this process records ---------------------------------------------------------
    def count(self, events: Sequence[EventRecord]) -> None:
        """Add live events to the current snapshot's windows (Redis has them too: the next
        refresh reads the same counts)."""
        snapshot = self._snapshot
        if snapshot is None:
            return
        live = [e for e in events if e.source != HISTORY_SOURCE]
        if not live:
            return
        rows = self.catalog.ensure([e.article_id for e in live])
        buckets = np.fromiter((self.online.bucket(to_unix(e.ts)) for e in live), np.int64, len(live))
        is_click = np.fromiter((e.kind == "click" for e in live), bool, len(live))
        with self._lock:
            for hours, counts in snapshot.windows.items():
                span = self.online.window_buckets(snapshot.taken_at, hours)
                inside = (buckets >= span.start) & (buckets < span.stop)
                counts.add(rows[inside & is_click], clicks=True)
                counts.add(rows[inside & ~is_click], clicks=False)

    def publish(self, items: Sequence[tuple[str, float]]) -> None:
        """Active articles (id, publish time) join the fresh list at once."""
        snapshot = self._snapshot
        if snapshot is None or not items:
            return
        rows = self.catalog.ensure([i for i, _ in items])
        times = np.fromiter((t for _, t in items), np.float64, len(items))
        with self._lock:
            keep = ~np.isin(snapshot.fresh_rows, rows)
            all_rows = np.concatenate([snapshot.fresh_rows[keep], rows])
            all_times = np.concatenate([snapshot.fresh_times[keep], times])
            order = np.argsort(-all_times, kind="stable")[:FRESH_DEPTH]
            snapshot.fresh_rows, snapshot.fresh_times = all_rows[order], all_times[order]

    def hide(self, item_id: str, hidden: bool) -> None:
        snapshot = self._snapshot
        if snapshot is None:
            return
        row = self.catalog.ensure([item_id])
        with self._lock:
            if hidden:
                snapshot.hidden_rows = np.union1d(snapshot.hidden_rows, row)
                keep = snapshot.fresh_rows != row[0]
                snapshot.fresh_rows, snapshot.fresh_times = snapshot.fresh_rows[keep], snapshot.fresh_times[keep]
            else:
                snapshot.hidden_rows = np.setdiff1d(snapshot.hidden_rows, row)

    # ---- the background refresher --------------------------------------------------------------
    def start(self, interval: float, clock) -> None:
        """Refresh every ``interval`` seconds of ``clock()`` in a daemon thread."""
        self.refresh(clock())
        self._thread = threading.Thread(target=self._run, args=(interval, clock), daemon=True,
                                         name="live-snapshot")
        self._thread.start()

    def _run(self, interval: float, clock) -> None:
        while not self._stop.wait(interval):
            try:
                self.refresh(clock())
            except Exception:  # never let the refresher die: the next tick tries again
                log.exception("live snapshot refresh failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
