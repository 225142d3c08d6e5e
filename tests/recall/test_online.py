"""The user's online state in a real Redis, as one request reads it (``fetch_context``): recent
clicks, seen, what the routes declare (vectors, profile, memberships, the clusters' lists), and
Redis being down (reads degrade, writes raise). Hot counts, fresh and hidden: test_live.py."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
import redis

from recall import buildkeys
from recall.catalog import ItemCatalog, ItemMeta
from recall.clusterstore import ClusterStore
from recall.domain import ContextNeeds, EventRecord, to_unix
from recall.online import OnlineStore, OnlineStoreError
from recall.profiles import UserProfile
from recall.rebuild import mark_whole
from recall.routes.cluster import ClusterListRoute
from tests.conftest import REDIS_URL

T0 = datetime(2026, 11, 10, 12, 0)
NOW = to_unix(T0)
BUILD = "v1"  # the build version whose keys (vectors, memberships, cluster lists) a request reads


def event(user: str, article: str, kind: str, at: datetime) -> EventRecord:
    return EventRecord(key=f"{user}:{article}:{kind}:{at.isoformat()}", user_id=user, article_id=article,
                       kind=kind, ts=at)


def hours_ago(h: float) -> datetime:
    return T0 - timedelta(hours=h)


def seen_ids(store: OnlineStore, user: str, catalog: ItemCatalog, now: float = NOW) -> set[str]:
    return {catalog.ids[r] for r in store.fetch_context(user, now, catalog).seen_rows}


class CountingRedis(redis.Redis):
    """A real client that counts the round trips a request makes (pipelines executed)."""

    round_trips = 0

    def pipeline(self, *args, **kwargs):
        pipe = super().pipeline(*args, **kwargs)
        execute = pipe.execute

        def counted(*a, **k):
            CountingRedis.round_trips += 1
            return execute(*a, **k)

        pipe.execute = counted
        return pipe


@pytest.fixture
def make_store(redis_client, settings):
    """OnlineStores on the test's prefix with some settings overridden; the namespace is flushed."""
    stores = []

    def make(**overrides) -> OnlineStore:
        store = OnlineStore(redis_client, settings.model_copy(update=overrides))
        mark_whole(store, "tests")
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
    assert ctx.click_times == sorted(ctx.click_times, reverse=True)
    assert ctx.click_times[0] == to_unix(hours_ago(13))
    assert not ctx.is_cold and not ctx.degraded
    # Redis that lost its state (no marker: restarted empty) makes every context degraded.
    store.r.delete(store.k("meta:whole"))
    assert store.fetch_context("u", now=NOW).degraded
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
    catalog = ItemCatalog({i: ItemMeta() for i in ["shown", "clicked", "never"]})
    store.record_events([event("u", "shown", "impression", hours_ago(2)),
                         event("u", "clicked", "click", hours_ago(1))])
    assert seen_ids(store, "u", catalog) == ({"shown", "clicked"} if includes_impressions else {"clicked"})
    assert seen_ids(store, "other_user", catalog) == set()


def test_seen_entries_older_than_the_ttl_are_ignored(make_store):
    ttl = 3600
    store = make_store(seen_ttl_seconds=ttl)
    catalog = ItemCatalog({i: ItemMeta() for i in ["old", "recent"]})
    store.record_events([event("u", "old", "click", T0 - timedelta(seconds=ttl + 60)),
                         event("u", "recent", "click", T0 - timedelta(seconds=ttl - 60))])
    assert seen_ids(store, "u", catalog) == {"recent"}
    # Both count as seen for a request made just after the older one.
    assert seen_ids(store, "u", catalog, NOW - 120) == {"old", "recent"}


def test_seen_articles_the_process_has_not_met_yet_are_still_seen(online, settings):
    """A click on an article this process has no row for (posted to another worker) is seen:
    when the same id then comes back in a cluster's list, the seen filter must know its row."""
    catalog = ItemCatalog({"known": ItemMeta()})
    online.record_events([event("u", "elsewhere", "click", hours_ago(1)), event("u", "known", "click", hours_ago(2))])
    ClusterStore(online, BUILD).set_memberships({"u": {"kmeans-tag": ["c1"]}})
    ClusterStore(online, BUILD).add_clicks([(NOW - 3600, "elsewhere", {"kmeans-tag": ["c1"]})], NOW, 6.0, 10)
    needs = ContextNeeds(clusters=True, list_kinds=("cf",), list_depth=10)
    ctx = online.fetch_context("u", NOW, catalog, needs, version=BUILD)
    listed, _ = ctx.cluster_lists[("cf", "kmeans-tag", "c1")]
    assert [catalog.ids[r] for r in listed] == ["elsewhere"]
    assert set(listed) <= set(ctx.seen_rows)
    assert {catalog.ids[r] for r in ctx.seen_rows} == {"elsewhere", "known"}


def test_a_request_reads_what_its_routes_declare_in_at_most_two_round_trips(online, settings):
    client = CountingRedis.from_url(REDIS_URL)
    store = OnlineStore(client, settings)  # the test's prefix: the online fixture flushes it
    catalog = ItemCatalog({i: ItemMeta(category="sports", tags=(("goal", 1.0),)) for i in ["a", "b", "c"]})
    store.record_events([event("u", "a", "click", hours_ago(1))])
    store.set_user_vectors(BUILD, "tag", [("u", np.arange(4, dtype=np.float32))])
    store.set_user_vectors(BUILD, "dssm", [("u", np.ones(3, np.float32))])
    # Another build's keys, of another space and other clusters: never read with BUILD's.
    store.set_user_vectors("v2", "tag", [("u", np.ones(6, dtype=np.float32))])
    ClusterStore(store, "v2").set_memberships({"u": {"kmeans-tag": ["c9"]}})
    store.apply_clicks_to_profiles([("u", NOW - 3600, catalog.get("a"))])
    clusters = ClusterStore(store, BUILD)
    clusters.set_memberships({"u": {"kmeans-tag": ["c1", "c2"], "rule": ["sports"]}})
    clusters.add_clicks([(NOW - 60 * k, item, {"kmeans-tag": ["c1"], "rule": ["sports"]})
                         for k, item in enumerate(["b", "new", "b", "c"])], NOW, 6.0, 10)
    # Centre lists come from the nightly job: written directly here.
    client.zadd(store.build_key(BUILD, "cl", "kmeans-tag", "centre", "c2"), {"c": 0.9, "a": 0.5, "b": -0.2})
    buildkeys.mark_complete(store, BUILD, "tests")

    def fetch(needs: ContextNeeds):
        before = CountingRedis.round_trips
        ctx = store.fetch_context("u", NOW, catalog, needs, version=BUILD)
        assert not ctx.degraded
        return ctx, CountingRedis.round_trips - before

    # Nothing declared: clicks and seen only, one round trip.
    ctx, trips = fetch(ContextNeeds())
    assert trips == 1 and ctx.recent_clicks == ["a"] and len(ctx.seen_rows) == 1
    assert ctx.profile is None and ctx.clusters == {} and ctx.user_vectors == {} and ctx.cluster_lists == {}

    # Vectors of the declared kinds only; the profile; the memberships, nearest first.
    ctx, trips = fetch(ContextNeeds(vector_kinds=("tag", "lstm"), profile=True, clusters=True))
    assert trips == 1
    assert set(ctx.user_vectors) == {"tag"} and ctx.user_vectors["tag"].tolist() == [0, 1, 2, 3]
    assert isinstance(ctx.profile, UserProfile) and ctx.profile.categories == {"sports": pytest.approx(1.0)}
    assert ctx.clusters == {"kmeans-tag": ["c1", "c2"], "rule": ["sports"]} and ctx.cluster_lists == {}

    # Lists: a second round trip, the declared kinds of the user's clusters, as deep as asked.
    ctx, trips = fetch(ContextNeeds(clusters=True, list_kinds=("cf", "centre"), list_depth=2))
    assert trips == 2
    mine = [("kmeans-tag", "c1"), ("kmeans-tag", "c2"), ("rule", "sports")]
    assert set(ctx.cluster_lists) == {(kind, scheme, label) for kind in ("cf", "centre") for scheme, label in mine}
    rows, scores = ctx.cluster_lists[("cf", "kmeans-tag", "c1")]
    assert [catalog.ids[r] for r in rows] == ["b", "new"] and scores[0] >= scores[1]
    assert "new" in catalog.row_of and "new" not in catalog  # a row without metadata, for now
    rows, scores = ctx.cluster_lists[("centre", "kmeans-tag", "c2")]
    assert [catalog.ids[r] for r in rows] == ["c", "a"] and scores.tolist() == pytest.approx([0.9, 0.5])
    assert len(ctx.cluster_lists[("cf", "kmeans-tag", "c2")][0]) == 0

    # A user without clusters never costs the second round trip.
    before = CountingRedis.round_trips
    cold = store.fetch_context("nobody", NOW, catalog, ContextNeeds(clusters=True, list_kinds=("cf",), list_depth=5),
                               version=BUILD)
    assert CountingRedis.round_trips - before == 1 and cold.clusters == {} and cold.cluster_lists == {}
    # The category asked for rides along.
    assert store.fetch_context("u", NOW, catalog, category="sports").category == "sports"
    # The other build reads its own vector and clusters; a build whose keys are not complete
    # (being written, or lost) is served degraded.
    other = store.fetch_context("u", NOW, catalog, ContextNeeds(vector_kinds=("tag",), clusters=True), version="v2")
    assert other.user_vectors["tag"].shape == (6,) and other.clusters == {"kmeans-tag": ["c9"]}
    assert other.degraded and not store.is_whole("v2") and store.is_whole(BUILD)
    client.close()


def test_cf_lists_long_after_the_build_still_rank(online):
    """CF scores grow as 2 ** (age since the build / half-life), up to 2 ** 900: read a month or
    more after a build (or by a state without a cutoff) they are far beyond float32's range."""
    catalog = ItemCatalog()
    ref = NOW - 40 * 86_400  # the last build ran 40 days ago: 160 half-lives of 6 h
    ClusterStore(online, BUILD).set_memberships({"u": {"kmeans-tag": ["c1"]}})
    ClusterStore(online, BUILD).add_clicks([(NOW - 60, "a", {"kmeans-tag": ["c1"]}), (NOW - 60, "a", {"kmeans-tag": ["c1"]}),
                                     (NOW - 6 * 3600, "b", {"kmeans-tag": ["c1"]})], ref, 6.0, 10)
    ctx = online.fetch_context("u", NOW, catalog, ContextNeeds(clusters=True, list_kinds=("cf",), list_depth=10),
                               version=BUILD)
    rows, scores = ctx.cluster_lists[("cf", "kmeans-tag", "c1")]
    assert np.all(np.isfinite(scores))
    assert scores[0] == pytest.approx(4 * scores[1], rel=0.01)  # two clicks against one 6 h older
    found = ClusterListRoute("cluster_cf", "cf").retrieve(ctx, 10)
    assert [catalog.ids[r] for r in found.rows] == ["a", "b"]
    assert found.scores.tolist() == pytest.approx([1.0, 0.25], rel=0.01)


@pytest.fixture
def down(settings):
    """A store whose Redis does not exist (nothing listens on that port)."""
    client = redis.Redis.from_url("redis://127.0.0.1:6390/0", socket_timeout=1, socket_connect_timeout=1)
    with pytest.raises(redis.ConnectionError):
        client.ping()
    yield OnlineStore(client, settings)
    client.close()


def test_redis_down_degrades_reads_and_counts_errors(down):
    needs = ContextNeeds(vector_kinds=("tag",), profile=True, clusters=True, list_kinds=("cf",), list_depth=5)
    ctx = down.fetch_context("u", now=NOW, needs=needs, category="sports")
    assert ctx.recent_clicks == [] and ctx.user_vectors == {} and ctx.is_cold
    assert len(ctx.seen_rows) == 0 and ctx.clusters == {} and ctx.cluster_lists == {}
    assert ctx.degraded is True and ctx.category == "sports" and ctx.now == NOW
    assert down.errors == 1
    down.fetch_context("u", now=NOW)
    assert down.errors == 2
    assert down.ping() is False


def test_redis_down_makes_writes_raise(down):
    with pytest.raises(OnlineStoreError):
        down.record_events([event("u", "a", "click", T0)])
    with pytest.raises(OnlineStoreError):
        down.apply_clicks_to_profiles([("u", NOW, ItemMeta(category="sports"))])
