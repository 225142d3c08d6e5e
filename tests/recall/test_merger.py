"""The weighted reciprocal-rank merger: dedup with provenance, quotas, weights, n, drop counts."""

from __future__ import annotations

import numpy as np
from pytest import approx

from recall.domain import Candidates
from recall.merger import WeightedRankMerger
from recall.routes.base import RouteConfig

# Catalog rows -> ids. Rows are not in id order: the merger must never rely on rows for order.
IDS = sorted({*"qwxyzprs", "h0", *(f"{r}{n}" for r in "ab" for n in range(20))}, reverse=True)
ROW = {i: r for r, i in enumerate(IDS)}


def ranked(route: str, *ids: str, scores=None) -> Candidates:
    """Candidates best first, with scores on the route's own (arbitrary) scale."""
    scores = [100.0 - n for n in range(len(ids))] if scores is None else scores
    return Candidates.of([ROW[i] for i in ids], scores, np.zeros(len(ids), np.int32), None, [f"{route}-seed"])


def configs(**weights_and_quotas: tuple[float, int]) -> dict[str, RouteConfig]:
    return {r: RouteConfig(r, True, w, q) for r, (w, q) in weights_and_quotas.items()}


def merge(per_route, configs, n, merger=None):
    return (merger or WeightedRankMerger()).merge(per_route, configs, n, IDS)


def test_an_item_found_by_several_routes_appears_once_with_all_provenance():
    per_route = {"a": ranked("a", "x", "y", "z"), "b": ranked("b", "z", "w"), "c": ranked("c", "q", "z")}
    fused, dropped = merge(per_route, configs(a=(1, 10), b=(1, 10), c=(1, 10)), 10)
    ids = [f.item_id for f in fused]
    assert sorted(ids) == sorted(set(ids)) == ["q", "w", "x", "y", "z"]
    z = next(f for f in fused if f.item_id == "z")
    assert [c.route for c in z.routes] == ["a", "b", "c"]  # in route order
    assert all(c.seed == f"{c.route}-seed" and c.raw_similarity is None for c in z.routes)
    # Each route's own score stays on its candidate: z is third in a, first in b, second in c.
    assert [c.score for c in z.routes] == [98.0, 100.0, 99.0]
    assert ids[0] == "z"  # found by every route: the others' agreement lifts it above every top item
    assert dropped["duplicate"] == 2
    assert [f.score for f in fused] == sorted((f.score for f in fused), reverse=True)


def test_each_route_is_cut_to_its_quota():
    per_route = {"a": ranked("a", *[f"a{n}" for n in range(10)]), "b": ranked("b", *[f"b{n}" for n in range(10)])}
    fused, dropped = merge(per_route, configs(a=(1, 3), b=(1, 5)), 100)
    ids = {f.item_id for f in fused}
    assert ids == {"a0", "a1", "a2", "b0", "b1", "b2", "b3", "b4"}  # each route's best, not any others
    assert dropped["quota"] == (10 - 3) + (10 - 5)
    assert dropped["duplicate"] == 0
    # A quota of zero takes nothing from the route.
    fused, dropped = merge(per_route, configs(a=(1, 0), b=(1, 2)), 100)
    assert [f.item_id for f in fused] == ["b0", "b1"] and dropped["quota"] == 10 + 8


def test_an_item_listed_by_several_routes_counts_a_duplicate_per_extra_listing():
    """A route lists an article once (``Candidates`` rows are unique: every registered route is
    checked for it in test_route_checks.py); the same article from several routes is one fused
    item with one provenance entry per route."""
    per_route = {"a": ranked("a", "x", "y"), "b": ranked("b", "x"), "c": ranked("c", "x", "y")}
    fused, dropped = merge(per_route, configs(a=(1, 10), b=(1, 10), c=(1, 10)), 10)
    assert [f.item_id for f in fused] == ["x", "y"]
    assert [len(f.routes) for f in fused] == [3, 2]
    assert dropped["duplicate"] == 3


def test_weights_shift_the_fused_order():
    per_route = {"a": ranked("a", "a0", "a1", "a2"), "b": ranked("b", "b0", "b1", "b2")}
    heavy_b, _ = merge(per_route, configs(a=(1, 10), b=(3, 10)), 10)
    heavy_a, _ = merge(per_route, configs(a=(3, 10), b=(1, 10)), 10)
    assert heavy_b[0].item_id == "b0" and heavy_a[0].item_id == "a0"
    # With b three times as heavy, even b's third item beats a's first.
    assert [f.item_id for f in heavy_b][:3] == ["b0", "b1", "b2"]
    # A route of weight zero still contributes candidates, but after everything else.
    muted, _ = merge(per_route, configs(a=(0, 10), b=(1, 10)), 10)
    assert [f.item_id for f in muted][:3] == ["b0", "b1", "b2"]
    assert {f.item_id for f in muted[3:]} == {"a0", "a1", "a2"}


def test_scores_on_different_scales_do_not_matter_only_ranks():
    big = ranked("big", "p", "q", scores=[1e6, 1e6 - 1])
    small = ranked("small", "r", "s", scores=[1e-6, 1e-6 - 1e-9])
    fused, _ = merge({"big": big, "small": small}, configs(big=(1, 10), small=(1.01, 10)), 4)
    assert [f.item_id for f in fused][:2] == ["r", "p"]


def test_n_is_respected():
    per_route = {"a": ranked("a", *[f"a{n}" for n in range(20)]), "b": ranked("b", *[f"b{n}" for n in range(20)])}
    for n in (0, 1, 7, 40, 100):
        fused, _ = merge(per_route, configs(a=(1, 50), b=(1, 50)), n)
        assert len(fused) == min(n, 40)
    assert merge({}, {}, 10) == ([], {})
    empty, _ = merge({"a": Candidates.empty()}, configs(a=(1, 10)), 10)
    assert empty == []


def test_ties_are_broken_by_id_at_the_cut_too():
    """Equal weights and ranks tie; the ids decide, never the catalog rows (which each process
    numbers in its own order)."""
    per_route = {f"r{n}": ranked(f"r{n}", f"a{n}") for n in range(12)}
    weights = configs(**{f"r{n}": (1, 10) for n in range(12)})
    for n in (1, 3, 12):
        fused, _ = merge(per_route, weights, n)
        assert [f.item_id for f in fused] == sorted(f"a{k}" for k in range(12))[:n]


def test_agreeing_routes_count_a_quarter_beyond_the_best_one():
    """Two routes of one space listing the same item must not outvote a strong route's top."""
    per_route = {"hot": ranked("hot", "h0"), "a": ranked("a", "x"), "b": ranked("b", "x")}
    weights = configs(hot=(2, 10), a=(1, 10), b=(1, 10))
    fused, _ = merge(per_route, weights, 10)
    assert [f.item_id for f in fused] == ["h0", "x"]
    assert fused[1].score == approx((1 + 0.25) / 61) and len(fused[1].routes) == 2
    # agreement=1 is plain reciprocal-rank fusion: the two votes add up to a tie, broken by id.
    plain, _ = merge(per_route, weights, 10, WeightedRankMerger(agreement=1.0))
    assert plain[0].score == approx(2 / 61) and plain[1].score == approx(2 / 61)
    assert [f.item_id for f in plain] == ["h0", "x"]
    # ... also when only one of the two is kept.
    assert [f.item_id for f in merge(per_route, weights, 1, WeightedRankMerger(agreement=1.0))[0]] == ["h0"]
    # agreement=0 is the best route alone.
    best_only, _ = merge(per_route, weights, 10, WeightedRankMerger(agreement=0.0))
    assert best_only[1].score == approx(1 / 61)
