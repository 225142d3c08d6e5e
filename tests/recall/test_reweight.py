"""The scorer: freshness, hotness and CTR reweight similarity, which stays the dominant factor."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from recall.catalog import ItemCatalog, ItemMeta
from recall.domain import Candidates
from recall.live import WindowCounts
from recall.reweight import Reweighter
from recall.settings import Settings

NOW = 1_800_000_000.0
HOUR = 3600.0


def counts(catalog: ItemCatalog, clicks=None, impressions=None) -> WindowCounts:
    """Window counts over the catalog's rows from {id: count}; ids it lacks get a row."""
    clicks, impressions = clicks or {}, impressions or {}
    catalog.ensure(list({**clicks, **impressions}))
    columns = {}
    for name, values in (("clicks", clicks), ("impressions", impressions)):
        columns[name] = np.zeros(len(catalog), np.float32)
        columns[name][catalog.rows(list(values))] = list(values.values())
    return WindowCounts(24.0, columns["clicks"], columns["impressions"])


def cands(catalog: ItemCatalog, *pairs: tuple[str, float]) -> Candidates:
    rows = catalog.ensure([i for i, _ in pairs])
    sims = [s for _, s in pairs]
    return Candidates.of(rows, sims, np.zeros(len(rows), np.int32), sims, ["seed"])


def scores(reweighter: Reweighter, candidates, window, catalog) -> dict[str, float]:
    out = reweighter.apply(candidates, window, catalog, NOW)
    return {catalog.ids[r]: float(s) for r, s in zip(out.rows, out.scores)}


def ids(out: Candidates, catalog: ItemCatalog) -> list[str]:
    return [catalog.ids[r] for r in out.rows]


def test_fresher_items_score_higher_at_equal_similarity():
    catalog = ItemCatalog({
        "new": ItemMeta(published=NOW - HOUR), "day": ItemMeta(published=NOW - 24 * HOUR),
        "week": ItemMeta(published=NOW - 7 * 24 * HOUR), "unknown": ItemMeta(published=None),
    })
    found = cands(catalog, *[(i, 0.7) for i in ["unknown", "week", "day", "new"]])
    found.seeds = np.arange(4, dtype=np.int32)
    found.seed_labels = ["s-unknown", "s-week", "s-day", "s-new"]
    out = Reweighter().apply(found, WindowCounts.empty(24.0), catalog, NOW)
    assert ids(out, catalog) == ["new", "day", "week", "unknown"]
    assert np.allclose(out.raw, 0.7)  # the raw similarity is kept
    # Provenance moves with its candidate.
    assert [c.seed for c in out.to_list("tag2vec", catalog.ids)] == ["s-new", "s-day", "s-week", "s-unknown"]


def test_hotter_items_score_higher_at_equal_similarity():
    catalog = ItemCatalog({i: ItemMeta(published=NOW - 5 * HOUR) for i in "abc"})
    window = counts(catalog, clicks={"a": 50, "b": 5}, impressions={"a": 500, "b": 50, "c": 50})
    s = scores(Reweighter(w_ctr=0.0), cands(catalog, *[(i, 0.7) for i in "cba"]), window, catalog)
    assert s["a"] > s["b"] > s["c"]


def test_higher_ctr_scores_higher_at_equal_clicks():
    catalog = ItemCatalog({i: ItemMeta(published=NOW) for i in "ab"})
    window = counts(catalog, clicks={"a": 10, "b": 10}, impressions={"a": 20, "b": 400})
    s = scores(Reweighter(), cands(catalog, ("b", 0.7), ("a", 0.7)), window, catalog)
    assert s["a"] > s["b"]


def test_rows_past_the_window_count_as_never_clicked():
    """A row added after the snapshot was taken (a new article) is outside its columns."""
    catalog = ItemCatalog({i: ItemMeta(published=NOW) for i in "ab"})
    window = counts(catalog, clicks={"a": 3}, impressions={"a": 10})
    catalog.put("late", ItemMeta(published=NOW))
    s = scores(Reweighter(), cands(catalog, ("late", 0.5), ("b", 0.5), ("a", 0.5)), window, catalog)
    assert s["late"] == pytest.approx(s["b"]) and s["a"] > s["b"]


@pytest.mark.parametrize("weights", [(0.3, 0.2, 0.5), (1.0, 1.0, 1.0), (0.0, 0.0, 2.0)])
def test_similarity_dominates_the_boost_is_bounded(weights):
    w_hot, w_ctr, w_fresh = weights
    reweighter = Reweighter(w_hot, w_ctr, w_fresh)
    bound = 1 + sum(weights)
    catalog = ItemCatalog({
        "best": ItemMeta(published=NOW), "stale": ItemMeta(published=NOW - 30 * 24 * HOUR),
        "future": ItemMeta(published=NOW + HOUR), "nometa": ItemMeta(),
    })
    window = counts(catalog, clicks={"best": 1000, "future": 3}, impressions={"best": 1000, "stale": 5000})
    for item, sim in itertools.product(["best", "stale", "future", "nometa", "absent"], [0.2, 0.61, 0.95]):
        boosted = float(reweighter.apply(cands(catalog, (item, sim)), window, catalog, NOW).scores[0])
        assert sim * (1 - 1e-6) <= boosted <= sim * bound * (1 + 1e-6)
    # A neighbour that is everything at once still loses to a clearly more similar one.
    low, high = 0.95 / bound - 0.01, 0.95
    out = reweighter.apply(cands(catalog, ("best", low), ("stale", high)), window, catalog, NOW)
    assert ids(out, catalog) == ["stale", "best"]


def test_no_candidates_no_work():
    empty = Candidates.empty()
    assert Reweighter().apply(empty, WindowCounts.empty(6.0), ItemCatalog(), NOW) is empty


def test_from_settings_reads_the_weights():
    settings = Settings(_env_file=None, weight_hotness=0.1, weight_ctr=0.0, weight_freshness=0.9,
                        freshness_half_life_hours=6)
    assert Reweighter.from_settings(settings) == Reweighter(0.1, 0.0, 0.9, 6.0)
    # Six hours is one half-life: the freshness factor halves against a brand new item.
    r = Reweighter.from_settings(settings)
    catalog = ItemCatalog({"new": ItemMeta(published=NOW), "six": ItemMeta(published=NOW - 6 * HOUR)})
    s = scores(r, cands(catalog, ("new", 0.5), ("six", 0.5)), WindowCounts.empty(24.0), catalog)
    assert s["new"] == pytest.approx(0.5 * (1 + 0.9)) and s["six"] == pytest.approx(0.5 * (1 + 0.45))
