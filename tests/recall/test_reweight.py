"""The scorer: freshness, hotness and CTR reweight similarity, which stays the dominant factor."""

from __future__ import annotations

import itertools

import pytest

from recall.catalog import ItemCatalog, ItemMeta
from recall.domain import Candidate, WindowStats
from recall.reweight import Reweighter
from recall.settings import Settings

NOW = 1_800_000_000.0
HOUR = 3600.0


def cand(item_id: str, sim: float) -> Candidate:
    return Candidate(item_id, sim, "tag2vec", "seed", sim)


def scores(reweighter: Reweighter, candidates, stats, catalog) -> dict[str, float]:
    return {c.item_id: c.score for c in reweighter.apply(candidates, stats, catalog, NOW)}


def test_fresher_items_score_higher_at_equal_similarity():
    catalog = ItemCatalog({
        "new": ItemMeta(published=NOW - HOUR), "day": ItemMeta(published=NOW - 24 * HOUR),
        "week": ItemMeta(published=NOW - 7 * 24 * HOUR), "unknown": ItemMeta(published=None),
    })
    out = Reweighter().apply([cand(i, 0.7) for i in ["unknown", "week", "day", "new"]], WindowStats(), catalog, NOW)
    assert [c.item_id for c in out] == ["new", "day", "week", "unknown"]
    assert all(c.raw_similarity == 0.7 for c in out)  # the raw similarity is kept


def test_hotter_items_score_higher_at_equal_similarity():
    catalog = ItemCatalog({i: ItemMeta(published=NOW - 5 * HOUR) for i in "abc"})
    stats = WindowStats(clicks={"a": 50, "b": 5}, impressions={"a": 500, "b": 50, "c": 50})
    s = scores(Reweighter(w_ctr=0.0), [cand(i, 0.7) for i in "cba"], stats, catalog)
    assert s["a"] > s["b"] > s["c"]


def test_higher_ctr_scores_higher_at_equal_clicks():
    catalog = ItemCatalog({i: ItemMeta(published=NOW) for i in "ab"})
    stats = WindowStats(clicks={"a": 10, "b": 10}, impressions={"a": 20, "b": 400})
    s = scores(Reweighter(), [cand("b", 0.7), cand("a", 0.7)], stats, catalog)
    assert s["a"] > s["b"]


@pytest.mark.parametrize("weights", [(0.3, 0.2, 0.5), (1.0, 1.0, 1.0), (0.0, 0.0, 2.0)])
def test_similarity_dominates_the_boost_is_bounded(weights):
    w_hot, w_ctr, w_fresh = weights
    reweighter = Reweighter(w_hot, w_ctr, w_fresh)
    bound = 1 + sum(weights)
    catalog = ItemCatalog({
        "best": ItemMeta(published=NOW), "stale": ItemMeta(published=NOW - 30 * 24 * HOUR),
        "future": ItemMeta(published=NOW + HOUR), "nometa": ItemMeta(),
    })
    stats = WindowStats(clicks={"best": 1000, "future": 3}, impressions={"best": 1000, "stale": 5000})
    for item, sim in itertools.product(["best", "stale", "future", "nometa", "absent"], [0.2, 0.61, 0.95]):
        boosted = reweighter.apply([cand(item, sim)], stats, catalog, NOW)[0].score
        assert sim <= boosted <= sim * bound + 1e-12
    # A neighbour that is everything at once still loses to a clearly more similar one.
    low, high = 0.95 / bound - 0.01, 0.95
    out = reweighter.apply([cand("best", low), cand("stale", high)], stats, catalog, NOW)
    assert [c.item_id for c in out] == ["stale", "best"]


def test_from_settings_reads_the_weights():
    settings = Settings(_env_file=None, weight_hotness=0.1, weight_ctr=0.0, weight_freshness=0.9,
                        freshness_half_life_hours=6)
    assert Reweighter.from_settings(settings) == Reweighter(0.1, 0.0, 0.9, 6.0)
    # Six hours is one half-life: the freshness factor halves against a brand new item.
    r = Reweighter.from_settings(settings)
    catalog = ItemCatalog({"new": ItemMeta(published=NOW), "six": ItemMeta(published=NOW - 6 * HOUR)})
    s = scores(r, [cand("new", 0.5), cand("six", 0.5)], WindowStats(), catalog)
    assert s["new"] == pytest.approx(0.5 * (1 + 0.9)) and s["six"] == pytest.approx(0.5 * (1 + 0.45))
