"""The cluster routes' list fusion, on hand-made lists with known answers."""

from __future__ import annotations

import pytest

from recall.domain import RequestContext
from recall.routes.cluster import ClusterListRoute, fuse_lists, user_clusters


def test_lists_are_fused_by_share_of_their_top_and_membership_weight():
    lists = {("kmeans-tag", "c1"): [("a", 4.0), ("b", 2.0)], ("rule", "football"): [("b", 1.0), ("c", 0.5)]}
    weights = {("kmeans-tag", "c1"): 1.0, ("rule", "football"): 0.5}
    fused = fuse_lists("cluster_cf", lists, weights, 10, keep_raw=False)
    # a: 4/4; b: 2/4 + 0.5 x 1/1; c: 0.5 x 0.5/1.
    assert [(c.item_id, c.score) for c in fused] == [("a", 1.0), ("b", 1.0), ("c", 0.25)]
    seeds = {c.item_id: c.seed for c in fused}
    assert seeds == {"a": "kmeans-tag:c1", "b": "kmeans-tag:c1", "c": "rule:football"}
    assert all(c.raw_similarity is None for c in fused)
    weights[("rule", "football")] = 1.0
    fused = fuse_lists("cluster_cf", lists, weights, 10, keep_raw=False)
    assert [(c.item_id, c.score, c.seed) for c in fused][0] == ("b", 1.5, "rule:football")


def test_items_opposite_a_centre_are_left_out():
    lists = {("kmeans-tag", "c1"): [("near", 0.8), ("far", -0.3)], ("kmeans-bnb", "c2"): [("odd", -0.1)]}
    weights = {("kmeans-tag", "c1"): 1.0, ("kmeans-bnb", "c2"): 1.0}
    fused = fuse_lists("cluster_centre", lists, weights, 10, keep_raw=True)
    assert [(c.item_id, c.raw_similarity) for c in fused] == [("near", 0.8)]


def test_the_nearest_cluster_counts_fully_and_the_others_at_the_secondary_weight():
    ctx = RequestContext("u", 0.0, clusters={"kmeans-tag": ["c1", "c2"], "rule": ["football"]})
    assert user_clusters(ctx, None, 0.5) == [("kmeans-tag", "c1", 1.0), ("kmeans-tag", "c2", 0.5),
                                            ("rule", "football", 1.0)]
    assert user_clusters(ctx, ("rule",), 0.5) == [("rule", "football", 1.0)]


def test_a_list_route_asks_for_its_users_clusters_only():
    asked = []

    def lists(kind, clusters, n):
        asked.append((kind, clusters, n))
        return {clusters[0]: [("x", 1.0)]}

    ctx = RequestContext("u", 0.0, recent_clicks=["r1", "r2"], clusters={"kmeans-tag": ["c3"]}, cluster_lists=lists)
    route = ClusterListRoute("cluster_cf", "cf")
    assert [c.item_id for c in route.retrieve(ctx, 5)] == ["x"]
    assert asked == [("cf", [("kmeans-tag", "c3")], 7)]  # extra room for the user's own clicks
    assert route.retrieve(RequestContext("cold", 0.0, cluster_lists=lists), 5) == []
    assert len(asked) == 1


@pytest.mark.parametrize("n", [0, 1])
def test_quota_is_respected(n):
    lists = {("s", "l"): [("a", 2.0), ("b", 1.0)]}
    assert len(fuse_lists("r", lists, {("s", "l"): 1.0}, n, keep_raw=False)) == n
