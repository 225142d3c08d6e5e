"""The live snapshot (hot window counts, the fresh list, hidden articles) read from a real Redis:
counts by event time within each window, fresh newest first and never the future, hiding and
unhiding, Redis going down (the last snapshot keeps serving, errors are counted), and events this
process records keeping the snapshot equal to what Redis counts."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import numpy as np
import pytest
import redis

from recall.catalog import ItemCatalog, ItemMeta
from recall.domain import HISTORY_SOURCE, EventRecord, to_unix
from recall.live import LiveSnapshot, LiveState
from recall.online import OnlineStore

T0 = datetime(2026, 11, 10, 12, 0)
NOW = to_unix(T0)


def event(user: str, article: str, kind: str, at: datetime, source: str = "api") -> EventRecord:
    return EventRecord(key=f"{user}:{article}:{kind}:{at.isoformat()}", user_id=user, article_id=article,
                       kind=kind, ts=at, source=source)


def hours_ago(h: float) -> datetime:
    return T0 - timedelta(hours=h)


def by_id(column: np.ndarray, catalog: ItemCatalog) -> dict[str, int]:
    return {catalog.ids[r]: int(column[r]) for r in np.flatnonzero(column)}


def clicks(snapshot: LiveSnapshot, hours: float, catalog: ItemCatalog) -> dict[str, int]:
    return by_id(snapshot.window(hours).clicks, catalog)


def impressions(snapshot: LiveSnapshot, hours: float, catalog: ItemCatalog) -> dict[str, int]:
    return by_id(snapshot.window(hours).impressions, catalog)


def fresh(snapshot: LiveSnapshot, catalog: ItemCatalog) -> list[str]:
    return [catalog.ids[r] for r in snapshot.fresh_rows]


def hidden(snapshot: LiveSnapshot, catalog: ItemCatalog) -> set[str]:
    return {catalog.ids[r] for r in snapshot.hidden_rows}


@pytest.fixture
def catalog() -> ItemCatalog:
    return ItemCatalog({"hot": ItemMeta(category="sports")})  # the others get rows as Redis names them


@pytest.fixture
def down(settings):
    """A store whose Redis does not exist (nothing listens on that port)."""
    client = redis.Redis.from_url("redis://127.0.0.1:6390/0", socket_timeout=1, socket_connect_timeout=1)
    yield OnlineStore(client, settings)
    client.close()


def test_window_counts_by_event_time_within_the_window(online, catalog):
    online.record_events([
        *[event(f"u{n}", "hot", "click", hours_ago(1 + n)) for n in range(3)],
        event("u9", "hot", "impression", hours_ago(1)),
        event("u1", "warm", "click", hours_ago(23)),
        *[event(f"u{n}", "stale", "click", hours_ago(30)) for n in range(5)],
        event("u1", "stale", "impression", hours_ago(30)),
        event("u1", "future", "click", T0 + timedelta(hours=2)),  # after "now": not yet happened
        event("u1", "backfill", "click", hours_ago(1), source=HISTORY_SOURCE),  # never hot
    ])
    live = LiveState(online, catalog, windows=[24, 48, 2])
    snapshot = live.get(NOW)
    assert clicks(snapshot, 24, catalog) == {"hot": 3, "warm": 1}
    assert impressions(snapshot, 24, catalog) == {"hot": 1}
    assert clicks(snapshot, 48, catalog) == {"hot": 3, "warm": 1, "stale": 5}
    assert impressions(snapshot, 48, catalog) == {"hot": 1, "stale": 1}
    assert clicks(snapshot, 2, catalog) == {"hot": 1}
    assert clicks(snapshot, 12, catalog) == {}  # a window nobody asked for counts nothing
    assert [catalog.ids[r] for r in snapshot.window(48).order()] == ["stale", "hot", "warm"]
    assert live.errors == 0 and not live.stale
    # New events this process records show up at once, without a refresh (same minute: no read).
    more = [event("u5", "warm", "click", hours_ago(0.5))]
    online.record_events(more)
    live.count(more)
    assert live.get(NOW + 30) is snapshot
    assert clicks(live.get(NOW + 30), 24, catalog) == {"hot": 3, "warm": 2}
    assert [catalog.ids[r] for r in snapshot.window(24).order()] == ["hot", "warm"]
    # A request asking for a new window gets it counted at once (no refresher thread).
    live.want([12])
    assert clicks(live.get(NOW + 30), 12, catalog) == {"hot": 3, "warm": 1}


def test_count_keeps_the_snapshot_equal_to_what_redis_counts(online, catalog, settings):
    live = LiveState(online, catalog, windows=[24, 6])
    live.get(NOW)  # counted for this minute; later events are added to it
    edge = timedelta(seconds=settings.hot_bucket_seconds / 2)
    events = [
        event("u1", "inside", "click", hours_ago(3)),
        event("u2", "inside", "impression", hours_ago(3)),
        event("u1", "near_start", "click", T0 - timedelta(hours=24) + edge),
        event("u1", "just_after_now", "impression", T0 + timedelta(seconds=90)),
        event("u1", "older", "click", hours_ago(25)),
        event("u1", "six_hours", "click", T0 - timedelta(hours=6) + edge),
        event("u1", "history", "click", hours_ago(1), source=HISTORY_SOURCE),
    ]
    online.record_events(events)
    live.count(events)
    kept = live.get(NOW)
    recounted = LiveState(online, catalog, windows=[24, 6]).refresh(NOW)
    for hours in (24, 6):
        assert clicks(kept, hours, catalog) == clicks(recounted, hours, catalog)
        assert impressions(kept, hours, catalog) == impressions(recounted, hours, catalog)
    assert "inside" in clicks(kept, 24, catalog) and "older" not in clicks(kept, 24, catalog)
    assert "history" not in clicks(kept, 24, catalog)
    assert clicks(kept, 6, catalog)["inside"] == 1 and impressions(kept, 6, catalog)["inside"] == 1


def test_clearing_hot_buckets_and_replaying_counts_once(online, catalog):
    events = [event("u1", "x", "click", hours_ago(1)), event("u2", "x", "click", hours_ago(2))]
    online.record_events(events)
    live = LiveState(online, catalog, windows=[24])
    assert clicks(live.refresh(NOW), 24, catalog) == {"x": 2}
    online.clear_hot_buckets(online.bucket(NOW - 48 * 3600), online.bucket(NOW))
    assert clicks(live.refresh(NOW), 24, catalog) == {}
    # Replaying the same events (what the nightly refresh does) counts them once.
    online.record_events(events)
    assert clicks(live.refresh(NOW), 24, catalog) == {"x": 2}
    assert clicks(LiveState(online, catalog, windows=[24]).refresh(NOW), 24, catalog) == {"x": 2}


def test_fresh_lists_published_articles_newest_first_and_never_the_future(online, catalog):
    published = {"a": NOW - 7200, "b": NOW - 60, "c": NOW, "d": NOW + 3600, "e": NOW - 86_400}
    online.publish_articles(list(published.items()))
    live = LiveState(online, catalog)
    snapshot = live.get(NOW)
    expected = sorted((i for i, t in published.items() if t <= NOW), key=lambda i: -published[i])
    assert fresh(snapshot, catalog) == expected and "d" not in fresh(snapshot, catalog)
    assert snapshot.fresh_times.tolist() == [published[i] for i in expected]
    # An hour later (another minute: the snapshot is read again) the scheduled article is first.
    assert fresh(live.get(NOW + 3600), catalog)[0] == "d"

    online.replace_fresh([("z", NOW - 5)])
    assert fresh(live.refresh(NOW), catalog) == ["z"]
    online.replace_fresh([])
    assert fresh(live.refresh(NOW), catalog) == []


def test_articles_this_process_publishes_join_the_fresh_list_at_once(online, catalog):
    online.publish_articles([("old", NOW - 7200), ("mid", NOW - 3600)])
    live = LiveState(online, catalog)
    snapshot = live.get(NOW)
    live.publish([("new", NOW - 60), ("old", NOW - 30)])  # a re-post moves the article up, once
    assert fresh(live.get(NOW), catalog) == ["old", "new", "mid"] and live.get(NOW) is snapshot
    assert snapshot.fresh_times.tolist() == [NOW - 30, NOW - 60, NOW - 3600]


def test_hidden_articles_and_unhiding(online, catalog):
    online.publish_articles([("x", NOW - 60), ("y", NOW - 30)])
    online.set_hidden("x", True)
    live = LiveState(online, catalog)
    snapshot = live.refresh(NOW)
    assert hidden(snapshot, catalog) == {"x"}
    assert fresh(snapshot, catalog) == ["y"]  # a hidden article leaves the fresh list
    online.set_hidden("x", False)
    assert hidden(live.refresh(NOW), catalog) == set()
    # What this process hides or unhides counts at once, before any refresh.
    online.set_hidden("y", True)
    live.hide("y", True)
    assert hidden(live.get(NOW), catalog) == {"y"} and fresh(live.get(NOW), catalog) == []
    assert hidden(live.refresh(NOW), catalog) == {"y"}
    online.set_hidden("y", False)
    live.hide("y", False)
    assert hidden(live.get(NOW), catalog) == set() and hidden(live.refresh(NOW), catalog) == set()


def test_redis_down_keeps_the_last_snapshot_and_counts_errors(online, down, catalog):
    online.record_events([event("u1", "hot", "click", hours_ago(1))])
    online.publish_articles([("hot", NOW - 600)])
    live = LiveState(online, catalog, windows=[24])
    snapshot = live.refresh(NOW)
    live.online = down  # Redis goes away
    assert live.refresh(NOW + 120) is snapshot and live.errors == 1 and live.stale
    assert live.get(NOW + 600) is snapshot and live.errors == 2  # a new minute tries again
    assert clicks(snapshot, 24, catalog) == {"hot": 1} and fresh(snapshot, catalog) == ["hot"]
    # What this process records still reaches the kept snapshot.
    live.count([event("u2", "hot", "click", hours_ago(0.5))])
    assert clicks(snapshot, 24, catalog) == {"hot": 2}
    live.online = online  # and comes back
    assert live.refresh(NOW + 600) is not snapshot and not live.stale and live.errors == 2


def test_redis_down_from_the_start_serves_an_empty_snapshot(down, catalog):
    live = LiveState(down, catalog, windows=[24, 6])
    snapshot = live.get(NOW)
    assert live.errors == 1 and live.stale
    assert sorted(snapshot.windows) == [6.0, 24.0] and clicks(snapshot, 24, catalog) == {}
    assert len(snapshot.fresh_rows) == 0 and len(snapshot.hidden_rows) == 0
    assert down.errors == 0  # the live snapshot counts its own errors, not the store's


def test_serving_refreshes_in_the_background_never_on_a_request(online, catalog):
    live = LiveState(online, catalog, windows=[6])
    live.start(0.02, lambda: NOW)
    try:
        first = live.get(NOW)
        assert live.get(NOW + 3600) is first or live.get(NOW + 3600).taken_at == NOW  # no read on a request
        online.publish_articles([("posted", NOW - 5)])
        deadline = time.monotonic() + 5
        while "posted" not in fresh(live.get(NOW), catalog):
            assert time.monotonic() < deadline, "the refresher never read the new article"
            time.sleep(0.01)
    finally:
        live.stop()
    assert not live._thread.is_alive()
