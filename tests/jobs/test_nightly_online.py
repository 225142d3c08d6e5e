"""The nightly's online step (``jobs/nightly.refresh_online``): over a Redis that is whole it
replays only what Redis lacks, and leaves the state a full replay leaves. Real SQLite and Redis."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from rich.console import Console

from encoders.base import TrainingCorpus
from jobs.ingest.synthetic import ingest_synthetic
from jobs.nightly import refresh_online
from jobs.runs import utcnow
from recall import sqlstore
from recall.db import make_sessionmaker
from recall.domain import HISTORY_SOURCE, EventRecord, to_unix
from recall.online import OnlineStore
from recall.rebuild import mark_whole, replayed_through
from recall.synthetic import generate

NO_ARTICLES = TrainingCorpus(articles={}, click_sequences={})  # the fresh list is not under test


@pytest.fixture
def world(sqlite_engine):
    """Three days that ended two hours ago."""
    now = datetime.now(timezone.utc).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    world = generate(articles=200, users=30, days=3, seed=5, start=now - timedelta(days=3, hours=2))
    ingest_synthetic(sqlite_engine, world, Console(quiet=True))
    return world


@pytest.fixture
def uncapped(settings):
    # Co-click pairs are read from the recent clicks: with every click kept, a recount over the
    # complete lists and a replay into empty ones pair the same clicks (a capped list may have
    # dropped an old click's partners; the full replay over a whole Redis, as before, shares that).
    return settings.model_copy(update={"recent_clicks_cap": 100_000})


def snapshot(online: OnlineStore, hot_from: int) -> dict[str, list]:
    """Every sorted set of the recent clicks, seen sets and co-click lists, the hot counters of
    buckets from ``hot_from``, and the co-click scores' reference time."""
    state = {}
    for key in online.r.scan_iter(match=f"{online.p}*", count=1000):
        name = key.decode().removeprefix(online.p)
        if name.startswith("hot:") and int(name.rsplit(":", 1)[1]) < hot_from:
            continue
        if name.startswith(("u:", "icf:", "hot:")) and online.r.type(key) == b"zset":
            state[name] = sorted(online.r.zrange(key, 0, -1, withscores=True))
    state["icf:ref"] = online.r.get(online.k("icf", "ref"))
    return state


def late_events(world, users: list[str], first_cutoff: datetime) -> list[EventRecord]:
    """What reached SQL without the API after a nightly: an hour of impressions and clicks
    after its cutoff, a history click, and a late file's click from before it."""
    articles = [a.id for a in world.articles[:40]]
    events = []
    for n, user in enumerate(users):
        for m in range(4):
            ts = first_cutoff + timedelta(minutes=5 + 7 * m + n)
            article = articles[(3 * n + m) % len(articles)]
            events.append(EventRecord(f"late-i-{n}-{m}", user, article, "impression", ts))
            events.append(EventRecord(f"late-c-{n}-{m}", user, article, "click", ts + timedelta(seconds=20)))
    events.append(EventRecord("late-history", users[0], articles[-1], "click", first_cutoff - timedelta(hours=1),
                              source=HISTORY_SOURCE))
    events.append(EventRecord("late-file", users[1], articles[-2], "click", first_cutoff - timedelta(days=2)))
    return events


def test_over_a_whole_redis_the_refresh_replays_less_and_leaves_what_a_full_replay_leaves(
        uncapped, sqlite_engine, world, online):
    online = OnlineStore(online.r, uncapped)
    sessions = make_sessionmaker(sqlite_engine)
    first_cutoff = utcnow() - timedelta(hours=1)
    assert replayed_through(online) is None  # marked whole without a watermark: replay it all
    first = refresh_online(online, sessions, NO_ARTICLES, first_cutoff, uncapped)
    assert first["replay"] == "full" and first["history_hot_events"] > 1000
    assert replayed_through(online)[0] == first_cutoff

    users = sorted({e.user_id for e in world.events})[:6]
    late = late_events(world, users, first_cutoff)
    with sessions() as session:
        assert sqlstore.insert_events(session, late) == len(late)
        session.commit()
    cutoff = utcnow()
    second = refresh_online(online, sessions, NO_ARTICLES, cutoff, uncapped)
    assert second["replay"] == f"since {first_cutoff.isoformat()}"
    assert second["history_events"] == len(late)  # the world ended before the first cutoff
    assert 0 < second["hot_events"] < first["history_hot_events"]
    clicks = sum(e.kind == "click" for e in world.events) + sum(e.kind == "click" for e in late)
    assert second["co_click_events"] == clicks
    late_file = online.r.zscore(online.k("u", users[1], "clicks"), late[-1].article_id)
    assert late_file == to_unix(late[-1].ts)

    hot_from = online.bucket(to_unix(cutoff) - 2 * uncapped.hot_window_hours * 3600)
    incremental = snapshot(online, hot_from)
    assert any(name.startswith("hot:c:") for name in incremental)
    online.flush_namespace()  # Redis lost its state: the next refresh replays it all
    full = refresh_online(online, sessions, NO_ARTICLES, cutoff, uncapped)
    assert full["replay"] == "full"
    assert snapshot(online, hot_from) == incremental


def test_a_watermark_older_than_the_horizon_means_a_full_replay(settings, sqlite_engine, world, online):
    sessions = make_sessionmaker(sqlite_engine)
    cutoff = utcnow()
    mark_whole(online, "an old nightly", replayed=(cutoff - timedelta(days=8), 10**9))
    assert refresh_online(online, sessions, NO_ARTICLES, cutoff, settings)["replay"] == "full"
    assert refresh_online(online, sessions, NO_ARTICLES, cutoff, settings)["replay"].startswith("since ")
