"""Online state in a real Redis: recent clicks, seen, hidden, hot windows, fresh list, and Redis
being down (reads degrade, writes raise)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import redis

from recall.domain import EventRecord, to_unix
from recall.online import OnlineStore, OnlineStoreError

T0 = datetime(2026, 11, 10, 12, 0)
NOW = to_unix(T0)


def event(user: str, article: str, kind: str, at: datetime) -> EventRecord:
    return EventRecord(key=f"{user}:{article}:{kind}:{at.isoformat()}", user_id=user, article_id=article,
                       kind=kind, ts=at)


def hours_ago(h: float) -> datetime:
    return T0 - timedelta(hours=h)


@pytest.fixture
def make_store(redis_client, settings):
    """OnlineStores on the test's prefix with some settings overridden; the namespace is flushed."""
    stores = []

    def make(**overrides) -> OnlineStore:
        store = OnlineStore(redis_client, settings.model_copy(update=overrides))
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.flush_namespace()


def test_recent_clicks_are_newest_first_and_capped(make_store):
    store = make_store(recent_clicks_cap=5)
    clicks = [event("u", f"a{n}", "click", hours_ago(20 - n)) for n in range(8)]
    impressions = [event("u", "shown_only", "impression", hours_ago(1))]
    assert store.record_events(clicks[4:] + impressions + clicks[:4]) == 9  # order of arrival is irrelevant
    ctx = store.fetch_context("u", now=NOW)
    expected = [e.article_id for e in sorted(clicks, key=lambda e: e.ts, reverse=True)][:5]
    assert ctx.recent_clicks == expected
    assert ctx.extras["click_times"] == sorted(ctx.extras["click_times"], reverse=True)
    assert not ctx.is_cold and "degraded" not in ctx.extras
    # A replay at an earlier moment sees only the clicks made up to then.
    assert store.fetch_context("u", now=to_unix(hours_ago(14.5))).recent_clicks == ["a5", "a4", "a3"]
    assert store.fetch_context("nobody", now=NOW).is_cold


def test_a_clicked_again_article_moves_to_the_front(online):
    online.record_events([event("u", "a", "click", hours_ago(3)), event("u", "b", "click", hours_ago(2)),
                          event("u", "a", "click", hours_ago(1))])
    assert online.fetch_context("u", now=NOW).recent_clicks == ["a", "b"]


@pytest.mark.parametrize("includes_impressions", [True, False])
def test_seen_includes_impressions_only_when_configured(make_store, includes_impressions):
    store = make_store(seen_includes_impressions=includes_impressions)
    store.record_events([event("u", "shown", "impression", hours_ago(2)),
                         event("u", "clicked", "click", hours_ago(1))])
    state = store.filter_state("u", ["shown", "clicked", "never"], NOW)
    assert state.seen == ({"shown", "clicked"} if includes_impressions else {"clicked"})
    assert store.filter_state("other_user", ["shown", "clicked"], NOW).seen == set()


def test_seen_entries_older_than_the_ttl_are_ignored(make_store):
    ttl = 3600
    store = make_store(seen_ttl_seconds=ttl)
    store.record_events([event("u", "old", "click", T0 - timedelta(seconds=ttl + 60)),
                         event("u", "recent", "click", T0 - timedelta(seconds=ttl - 60))])
    assert store.filter_state("u", ["old", "recent"], NOW).seen == {"recent"}
    # Both count as seen for a request made just after the older one.
    assert store.filter_state("u", ["old", "recent"], NOW - 120).seen == {"old", "recent"}


def test_hidden_items_and_unhiding(online):
    online.publish_articles([("x", NOW - 60), ("y", NOW - 30)])
    online.set_hidden("x", True)
    assert online.filter_state("anyone", ["x", "y"], NOW).hidden == {"x"}
    assert [i for i, _ in online.fresh(NOW, 10)] == ["y"]  # a hidden article leaves the fresh list
    online.set_hidden("x", False)
    assert online.filter_state("anyone", ["x", "y"], NOW).hidden == set()
    assert online.filter_state("anyone", [], NOW).hidden == set()


def test_window_stats_count_by_event_time_within_the_window(online):
    online.record_events([
        *[event(f"u{n}", "hot", "click", hours_ago(1 + n)) for n in range(3)],
        event("u9", "hot", "impression", hours_ago(1)),
        event("u1", "warm", "click", hours_ago(23)),
        *[event(f"u{n}", "stale", "click", hours_ago(30)) for n in range(5)],
        event("u1", "stale", "impression", hours_ago(30)),
        event("u1", "future", "click", T0 + timedelta(hours=2)),  # after "now": not yet happened
    ])
    stats = online.window_stats(NOW, 24)
    assert stats.clicks == {"hot": 3, "warm": 1}
    assert stats.impressions == {"hot": 1}
    wide = online.window_stats(NOW, 48)
    assert wide.clicks == {"hot": 3, "warm": 1, "stale": 5} and wide.impressions == {"hot": 1, "stale": 1}
    assert online.window_stats(NOW, 2).clicks == {"hot": 1}
    # New events show up at once: writes invalidate the per-minute cache.
    online.record_events([event("u5", "warm", "click", hours_ago(0.5))])
    assert online.window_stats(NOW, 24).clicks == {"hot": 3, "warm": 2}


def test_fresh_lists_published_articles_newest_first(online):
    published = {"a": NOW - 7200, "b": NOW - 60, "c": NOW, "d": NOW + 3600, "e": NOW - 86_400}
    online.publish_articles(list(published.items()))
    fresh = online.fresh(NOW, 10)
    expected = sorted((i for i, t in published.items() if t <= NOW), key=lambda i: -published[i])
    assert [i for i, _ in fresh] == expected and "d" not in dict(fresh)
    assert dict(fresh) == {i: published[i] for i in expected}
    assert [i for i, _ in online.fresh(NOW, 2)] == expected[:2]
    # An hour later the article scheduled for then is live and first.
    assert online.fresh(NOW + 3600, 1)[0][0] == "d"

    online.replace_fresh([("z", NOW - 5)])
    assert online.fresh(NOW, 10) == [("z", NOW - 5)]
    online.replace_fresh([])
    assert online.fresh(NOW, 10) == []


@pytest.fixture
def down(settings):
    """A store whose Redis does not exist (nothing listens on that port)."""
    client = redis.Redis.from_url("redis://127.0.0.1:6390/0", socket_timeout=1, socket_connect_timeout=1)
    with pytest.raises(redis.ConnectionError):
        client.ping()
    yield OnlineStore(client, settings)
    client.close()


def test_redis_down_degrades_reads_and_counts_errors(down):
    ctx = down.fetch_context("u", now=NOW)
    assert ctx.recent_clicks == [] and ctx.user_vectors == {} and ctx.is_cold
    assert ctx.extras.get("degraded") is True
    assert down.errors == 1
    state = down.filter_state("u", ["a", "b"], NOW)
    assert state.seen == set() and state.hidden == set()
    stats = down.window_stats(NOW, 24)
    assert stats.clicks == {} and stats.impressions == {}
    assert down.fresh(NOW, 10) == []
    assert down.errors == 4
    assert down.ping() is False


def test_redis_down_makes_writes_raise(down):
    with pytest.raises(OnlineStoreError):
        down.record_events([event("u", "a", "click", T0)])


def test_cached_windows_stay_equal_to_what_redis_counts(online, redis_client, settings):
    online.window_stats(NOW, 24)  # cached for this minute; later writes are added to the cache
    online.window_stats(NOW, 6)
    edge = timedelta(seconds=settings.hot_bucket_seconds / 2)
    online.record_events([
        event("u1", "inside", "click", hours_ago(3)),
        event("u1", "near_start", "click", T0 - timedelta(hours=24) + edge),
        event("u1", "just_after_now", "impression", T0 + timedelta(seconds=90)),
        event("u1", "older", "click", hours_ago(25)),
        event("u1", "six_hours", "click", T0 - timedelta(hours=6) + edge),
    ])
    for hours in (24, 6):
        cached = online.window_stats(NOW, hours)
        recomputed = OnlineStore(redis_client, settings).window_stats(NOW, hours)
        assert (cached.clicks, cached.impressions) == (recomputed.clicks, recomputed.impressions)
    assert "inside" in online.window_stats(NOW, 24).clicks and "older" not in online.window_stats(NOW, 24).clicks


def test_clearing_hot_buckets_also_forgets_cached_windows(online, redis_client, settings):
    online.record_events([event("u1", "x", "click", hours_ago(1)), event("u2", "x", "click", hours_ago(2))])
    assert online.window_stats(NOW, 24).clicks == {"x": 2}
    online.clear_hot_buckets(online.bucket(NOW - 48 * 3600), online.bucket(NOW))
    assert online.window_stats(NOW, 24).clicks == {}
    # Replaying the same events (what the nightly refresh does) counts them once.
    online.record_events([event("u1", "x", "click", hours_ago(1)), event("u2", "x", "click", hours_ago(2))])
    assert online.window_stats(NOW, 24).clicks == {"x": 2}
    assert OnlineStore(redis_client, settings).window_stats(NOW, 24).clicks == {"x": 2}
