"""The weighted reciprocal-rank merger: dedup with provenance, quotas, weights, n, drop counts."""

from __future__ import annotations

from pytest import approx

from recall.domain import Candidate
from recall.merger import WeightedRankMerger
from recall.routes.base import RouteConfig


def ranked(route: str, *ids: str) -> list[Candidate]:
    """Candidates best first, with scores on the route's own (arbitrary) scale."""
    return [Candidate(i, 100.0 - n, route, seed=f"{route}-seed") for n, i in enumerate(ids)]


def configs(**weights_and_quotas: tuple[float, int]) -> dict[str, RouteConfig]:
    return {r: RouteConfig(r, True, w, q) for r, (w, q) in weights_and_quotas.items()}


def test_an_item_found_by_several_routes_appears_once_with_all_provenance():
    per_route = {"a": ranked("a", "x", "y", "z"), "b": ranked("b", "z", "w"), "c": ranked("c", "q", "z")}
    fused, dropped = WeightedRankMerger().merge(per_route, configs(a=(1, 10), b=(1, 10), c=(1, 10)), 10)
    ids = [f.item_id for f in fused]
    assert sorted(ids) == sorted(set(ids)) == ["q", "w", "x", "y", "z"]
    z = next(f for f in fused if f.item_id == "z")
    assert sorted(c.route for c in z.routes) == ["a", "b", "c"]
    assert all(c.seed == f"{c.route}-seed" for c in z.routes)
    assert ids[0] == "z"  # found by every route: the others' agreement lifts it above every top item
    assert dropped["duplicate"] == 2
    assert [f.score for f in fused] == sorted((f.score for f in fused), reverse=True)


def test_each_route_is_cut_to_its_quota():
    per_route = {"a": ranked("a", *[f"a{n}" for n in range(10)]), "b": ranked("b", *[f"b{n}" for n in range(10)])}
    fused, dropped = WeightedRankMerger().merge(per_route, configs(a=(1, 3), b=(1, 5)), 100)
    ids = {f.item_id for f in fused}
    assert ids == {"a0", "a1", "a2", "b0", "b1", "b2", "b3", "b4"}  # each route's best, not any others
    assert dropped["quota"] == (10 - 3) + (10 - 5)
    assert dropped["duplicate"] == 0


def test_a_route_listing_an_item_twice_counts_a_duplicate():
    fused, dropped = WeightedRankMerger().merge({"a": ranked("a", "x", "x", "y")}, configs(a=(1, 10)), 10)
    assert [f.item_id for f in fused] == ["x", "y"] and len(fused[0].routes) == 1
    assert dropped["duplicate"] == 1


def test_weights_shift_the_fused_order():
    per_route = {"a": ranked("a", "a0", "a1", "a2"), "b": ranked("b", "b0", "b1", "b2")}
    merger = WeightedRankMerger()
    heavy_b, _ = merger.merge(per_route, configs(a=(1, 10), b=(3, 10)), 10)
    heavy_a, _ = merger.merge(per_route, configs(a=(3, 10), b=(1, 10)), 10)
    assert heavy_b[0].item_id == "b0" and heavy_a[0].item_id == "a0"
    # With b three times as heavy, even b's third item beats a's first.
    assert [f.item_id for f in heavy_b][:3] == ["b0", "b1", "b2"]
    # A route of weight zero still contributes candidates, but after everything else.
    muted, _ = merger.merge(per_route, configs(a=(0, 10), b=(1, 10)), 10)
    assert [f.item_id for f in muted][:3] == ["b0", "b1", "b2"]
    assert {f.item_id for f in muted[3:]} == {"a0", "a1", "a2"}


def test_scores_on_different_scales_do_not_matter_only_ranks():
    big = [Candidate(i, 1e6 - n, "big") for n, i in enumerate(["p", "q"])]
    small = [Candidate(i, 1e-6 - n * 1e-9, "small") for n, i in enumerate(["r", "s"])]
    fused, _ = WeightedRankMerger().merge({"big": big, "small": small}, configs(big=(1, 10), small=(1.01, 10)), 4)
    assert [f.item_id for f in fused][:2] == ["r", "p"]


def test_n_is_respected():
    per_route = {"a": ranked("a", *[f"a{n}" for n in range(20)]), "b": ranked("b", *[f"b{n}" for n in range(20)])}
    for n in (0, 1, 7, 40, 100):
        fused, _ = WeightedRankMerger().merge(per_route, configs(a=(1, 50), b=(1, 50)), n)
        assert len(fused) == min(n, 40)
    fused, _ = WeightedRankMerger().merge({}, {}, 10)
    assert fused == []


def test_agreeing_routes_count_a_quarter_beyond_the_best_one():
    """Two routes of one space listing the same item must not outvote a strong route's top."""
    per_route = {"hot": ranked("hot", "h0"), "a": ranked("a", "x"), "b": ranked("b", "x")}
    weights = configs(hot=(2, 10), a=(1, 10), b=(1, 10))
    fused, _ = WeightedRankMerger().merge(per_route, weights, 10)
    assert [f.item_id for f in fused] == ["h0", "x"]
    assert fused[1].score == approx((1 + 0.25) / 61) and len(fused[1].routes) == 2
    # agreement=1 is plain reciprocal-rank fusion: the two votes add up to a tie, broken by id.
    plain, _ = WeightedRankMerger(agreement=1.0).merge(per_route, weights, 10)
    assert plain[0].score == approx(2 / 61) and plain[1].score == approx(2 / 61)
    # agreement=0 is the best route alone.
    best_only, _ = WeightedRankMerger(agreement=0.0).merge(per_route, weights, 10)
    assert best_only[1].score == approx(1 / 61)
