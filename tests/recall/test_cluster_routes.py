"""The cluster routes' list fusion, on hand-made lists with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recall.catalog import ItemCatalog, ItemMeta
from recall.clustering import ClusterModel
from recall.domain import RequestContext
from recall.index import VectorIndex
from recall.routes.cluster import LIST_SPARE, ClusterListRoute, GroupProfileRoute, user_clusters

CATALOG = ItemCatalog({i: ItemMeta(category="sports") for i in ["a", "b", "c", "near", "far", "odd", "x"]})


def lists(kind: str, **by_cluster: list[tuple[str, float]]) -> dict:
    """{(kind, scheme, label): (rows, scores)} from scheme__label=[(id, score), ...]."""
    out = {}
    for key, pairs in by_cluster.items():
        scheme, label = key.split("__")
        out[(kind, scheme.replace("_", "-"), label)] = (CATALOG.ensure([i for i, _ in pairs]),
                                                         np.array([s for _, s in pairs], np.float32))
    return out


def listed(found) -> list[tuple[str, float, str | None, float | None]]:
    return [(c.item_id, pytest.approx(c.score), c.seed, c.raw_similarity)
            for c in found.to_list("cluster_cf", CATALOG.ids)]


def test_lists_are_fused_by_share_of_their_top_and_membership_weight():
    cf = lists("cf", kmeans_tag__c1=[("a", 4.0), ("b", 2.0)], rule__football=[("b", 1.0), ("c", 0.5)])
    route = ClusterListRoute("cluster_cf", "cf")
    # The rule scheme's nearest cluster has no list: football, second, counts at the secondary weight.
    ctx = RequestContext("u", 0.0, clusters={"kmeans-tag": ["c1"], "rule": ["gone", "football"]}, cluster_lists=cf)
    # a: 4/4; b: 2/4 + 0.5 x 1/1; c: 0.5 x 0.5/1. The seed is the cluster that gave most.
    assert listed(route.retrieve(ctx, 10)) == [("a", 1.0, "kmeans-tag:c1", None), ("b", 1.0, "kmeans-tag:c1", None),
                                               ("c", 0.25, "rule:football", None)]
    ctx.clusters = {"kmeans-tag": ["c1"], "rule": ["football"]}
    assert listed(route.retrieve(ctx, 10))[0] == ("b", 1.5, "rule:football", None)
    # The secondary weight comes from the config.
    heavy = ClusterListRoute("cluster_cf", "cf", secondary=1.0)
    ctx.clusters = {"kmeans-tag": ["c1"], "rule": ["gone", "football"]}
    assert listed(heavy.retrieve(ctx, 10))[0] == ("b", 1.5, "rule:football", None)


def test_items_opposite_a_centre_are_left_out_and_centres_keep_their_similarity():
    """Centre lists come with the build (each scheme's model), not with the request."""
    models = {scheme: ClusterModel(scheme, "kmeans", "tag", labels, "tag2vec", centre_lists=lists_)
              for scheme, labels, lists_ in [
                  ("kmeans-tag", ["c1"], {"c1": [("near", 0.8), ("far", -0.3)]}),
                  ("kmeans-bnb", ["c2"], {"c2": [("odd", -0.1)]})]}
    for model in models.values():
        model.bind(CATALOG)
    route = ClusterListRoute("cluster_centre", "centre", models=models)
    assert route.needs.clusters and route.needs.list_kinds == ()  # nothing to read from Redis but memberships
    ctx = RequestContext("u", 0.0, clusters={"kmeans-tag": ["c1"], "kmeans-bnb": ["c2"]})
    found = route.retrieve(ctx, 10)
    assert [(c.item_id, c.raw_similarity) for c in found.to_list("cluster_centre", CATALOG.ids)] == \
        [("near", pytest.approx(0.8))]
    # Lists in the context are Redis' (CF): a centre route never reads them.
    ctx.cluster_lists = lists("centre", kmeans_tag__c1=[("x", 1.0)])
    assert [c.item_id for c in route.retrieve(ctx, 10).to_list("cluster_centre", CATALOG.ids)] == ["near"]


def test_the_nearest_cluster_counts_fully_and_the_others_at_the_secondary_weight():
    ctx = RequestContext("u", 0.0, clusters={"kmeans-tag": ["c1", "c2"], "rule": ["football"]})
    assert user_clusters(ctx, None, 0.5) == [("kmeans-tag", "c1", 1.0), ("kmeans-tag", "c2", 0.5),
                                            ("rule", "football", 1.0)]
    assert user_clusters(ctx, ("rule",), 0.5) == [("rule", "football", 1.0)]


def test_a_list_route_declares_the_lists_of_its_kind_deep_enough_for_the_users_own_clicks():
    """The request reads, in its second round trip, the lists of the user's clusters only
    (``fetch_context``, tested with Redis in test_online.py), as deep as the route declares."""
    route = ClusterListRoute("cluster_cf", "cf", quota=7)
    assert route.needs.clusters and route.needs.list_kinds == ("cf",)
    assert route.needs.list_depth == 7 + LIST_SPARE  # extra room for the user's own clicks
    cf = lists("cf", kmeans_tag__c3=[("x", 1.0)], kmeans_tag__c4=[("a", 5.0)])
    ctx = RequestContext("u", 0.0, recent_clicks=["r1", "r2"], clusters={"kmeans-tag": ["c3"]}, cluster_lists=cf)
    assert [c.item_id for c in route.retrieve(ctx, 5).to_list("cluster_cf", CATALOG.ids)] == ["x"]
    # Another kind's lists, and lists of clusters the user is not in, are not read.
    assert len(ClusterListRoute("cluster_centre", "centre").retrieve(ctx, 5)) == 0
    assert len(ClusterListRoute("cluster_cf", "cf").retrieve(
        RequestContext("u", 0.0, clusters={"kmeans-tag": ["c9"]}, cluster_lists=cf), 5)) == 0
    assert len(route.retrieve(RequestContext("cold", 0.0, cluster_lists=cf), 5)) == 0


@pytest.mark.parametrize("n", [0, 1])
def test_quota_is_respected(n):
    ctx = RequestContext("u", 0.0, clusters={"s": ["l"]}, cluster_lists=lists("cf", s__l=[("a", 2.0), ("b", 1.0)]))
    assert len(ClusterListRoute("r", "cf").retrieve(ctx, n)) == n


def test_group_profile_searches_each_clusters_group_vector_weighted_by_membership():
    ids = ["a", "b", "c"]
    vectors = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]], np.float32)
    index = VectorIndex.build(ids, vectors)
    index.bind(CATALOG)
    model = ClusterModel("kmeans-tag", "kmeans", "tag", ["c0", "c1"], "tag2vec",
                         centres=np.eye(3, dtype=np.float32)[:2], group_vectors=np.eye(3, dtype=np.float32)[:2])
    route = GroupProfileRoute("group_profile", index, {"kmeans-tag": model})
    ctx = RequestContext("u", 0.0, clusters={"kmeans-tag": ["c1", "c0"], "rule": ["football"]})
    found = {c.item_id: c for c in route.retrieve(ctx, 10).to_list("group_profile", CATALOG.ids)}
    half = 1 / math.sqrt(2)
    # b: 1 x cos(c1, b); a: 0.5 x cos(c0, a); c: 1 x cos(c1, c) + 0.5 x cos(c0, c).
    assert {i: c.score for i, c in found.items()} == pytest.approx({"b": 1.0, "a": 0.5, "c": 1.5 * half})
    assert found["c"].seed == "kmeans-tag:c1" and found["c"].raw_similarity == pytest.approx(half)
    assert found["a"].seed == "kmeans-tag:c0"
    # A scheme without group vectors (rules), or no clusters, gives nothing.
    assert len(route.retrieve(RequestContext("u", 0.0, clusters={"rule": ["football"]}), 10)) == 0
