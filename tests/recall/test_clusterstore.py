"""Cluster state in a real Redis: CF lists, a build's schemes and memberships (each build's own), degraded reads."""

from __future__ import annotations

import pytest
import redis

from recall.clusterstore import ClusterProfile, ClusterStore, SchemeSummary
from recall.online import OnlineStore

HOUR = 3600.0


@pytest.fixture
def store(online) -> ClusterStore:
    return ClusterStore(online, "v1")


def profile(scheme: str, label: str, size: int) -> ClusterProfile:
    return ClusterProfile(scheme, label, size, [("goal", 1.0)], [("sports", 1.0)], {"light": size})


def summary(scheme: str, sizes: list[int]) -> SchemeSummary:
    return SchemeSummary(scheme, "kmeans", "tag", len(sizes), "2026-11-23T00:00:00", 1.0, sizes)


def test_cf_lists_decay_old_clicks_and_keep_the_strongest(store):
    clusters = {"kmeans-tag": ["c1"], "rule": ["football"]}
    store.add_clicks([(0.0, "old", clusters), (0.0, "old", clusters),  # two clicks, 12 h earlier...
                      (12 * HOUR, "new", clusters)], ref=0.0, half_life_hours=6.0, cap=10)
    top = store.top_items("kmeans-tag", "c1")
    assert [item for item, _ in top] == ["new", "old"]  # ...weigh 2 x 1/4 against 1
    assert top[0][1] == pytest.approx(4 * top[1][1] / 2)
    assert store.top_items("rule", "football")[0][0] == "new"
    store.add_clicks([(12 * HOUR, f"a{n}", {"kmeans-tag": ["c1"]}) for n in range(20)], 0.0, 6.0, cap=10)
    assert len(store.top_items("kmeans-tag", "c1", n=100)) == 10


def test_a_builds_schemes_profiles_and_memberships_are_its_own(store, online):
    store.write_scheme(summary("kmeans-tag", [3, 1]), {"u1": ["c1"], "u2": ["c2", "c1"]},
                       [profile("kmeans-tag", "c1", 3), profile("kmeans-tag", "c2", 1)],
                       {"c1": [("a1", 0.9)], "c2": []})
    assert store.memberships("u2") == {"kmeans-tag": ["c2", "c1"]}
    assert store.clusters("kmeans-tag") == (2, [profile("kmeans-tag", "c1", 3), profile("kmeans-tag", "c2", 1)])
    assert store.lists("centre", [("kmeans-tag", "c1")], 5) == {("kmeans-tag", "c1"): [("a1", 0.9)]}
    assert [s.name for s in store.schemes()] == ["kmeans-tag"]
    # The next build's refresh drops c2 and the scheme "rule": in its own keys, beside v1's.
    newer = ClusterStore(online, "v2")
    newer.write_scheme(summary("kmeans-tag", [4]), {"u1": ["c1"], "u2": ["c1"]}, [profile("kmeans-tag", "c1", 4)],
                       {"c1": []})
    assert newer.clusters("kmeans-tag")[0] == 1 and newer.profile("kmeans-tag", "c2") is None
    assert newer.memberships("u2") == {"kmeans-tag": ["c1"]}
    assert store.memberships("u2") == {"kmeans-tag": ["c2", "c1"]} and store.clusters("kmeans-tag")[0] == 2
    newer.add_clicks([(0.0, "a2", {"kmeans-tag": ["c1"]})], ref=0.0, half_life_hours=6.0, cap=10)
    assert store.top_items("kmeans-tag", "c1") == [] and newer.top_items("kmeans-tag", "c1")[0][0] == "a2"


def test_an_empty_membership_removes_the_users_scheme(store):
    store.set_memberships({"u1": {"rule": ["football"], "kmeans-tag": ["c1"]}})
    store.set_memberships({"u1": {"rule": []}})
    assert store.memberships("u1") == {"kmeans-tag": ["c1"]}


def test_reads_degrade_when_redis_is_down(settings):
    dead = OnlineStore(redis.Redis.from_url("redis://127.0.0.1:6390/0", socket_connect_timeout=0.2), settings)
    store = ClusterStore(dead, "v1")
    assert store.lists("cf", [("kmeans-tag", "c1")], 10) == {}
    assert dead.errors == 1
