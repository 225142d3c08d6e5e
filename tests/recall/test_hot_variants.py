"""Hot narrowed to the user's categories, and trending by click velocity: both read the live
snapshot and the catalog only (no Redis), so they are checked on hand-made snapshots."""

from __future__ import annotations

import numpy as np
import pytest

from recall.catalog import ItemCatalog, ItemMeta
from recall.domain import RequestContext
from recall.live import LiveSnapshot, WindowCounts
from recall.routes.base import RouteConfig
from recall.routes.fallback import HotCategoryRoute, HotRoute, TrendingRoute
from recall.serving import ServingState

NOW = 1_800_000_000.0

ARTICLES = {  # id -> category (None: an id-only article)
    "s1": "sports", "s2": "sports", "s3": "sports", "t1": "tech", "t2": "tech", "p1": "politics",
    "bare": None, "read-s": "sports", "read-s2": "sports", "read-t": "tech",
}


def catalog() -> ItemCatalog:
    return ItemCatalog({i: ItemMeta(category=c, published=NOW - 3600) for i, c in ARTICLES.items()})


def snapshot(cat: ItemCatalog, windows: dict[float, dict[str, float]]) -> LiveSnapshot:
    counts = {}
    for hours, clicks in windows.items():
        column = np.zeros(len(cat), np.float32)
        for item, n in clicks.items():
            column[cat.row_of[item]] = n
        counts[hours] = WindowCounts(hours, column, column * 10, cat.published)
    return LiveSnapshot(NOW, counts)


def ids(found, cat: ItemCatalog) -> list[str]:
    return [cat.ids[r] for r in found.rows]


HOT = {"p1": 50, "s1": 9, "t1": 12, "s2": 4, "bare": 30, "t2": 1}


def test_hot_category_ranks_the_users_categories_by_clicks_times_their_share():
    cat = catalog()
    ctx = RequestContext("reader", NOW, recent_clicks=["read-s", "read-t", "read-s2", "unknown-id"],
                         live=snapshot(cat, {6.0: HOT}))
    route = HotCategoryRoute("hot_category", cat, window_hours=6.0)
    found = route.retrieve(ctx, 10)
    # sports is 2 of the user's 3 categorised clicks (share 1), tech 1 (share 0.5): t1 12 x 0.5 = 6 < s1 9.
    assert ids(found, cat) == ["s1", "t1", "s2", "t2"]
    assert found.scores.tolist() == pytest.approx([9, 6, 4, 0.5])
    assert found.raw.tolist() == [9, 12, 4, 1]  # the clicks behind each
    assert [c.seed for c in found.to_list("hot_category", cat.ids)] == ["sports", "tech", "sports", "tech"]
    # Politics and the id-only article, hotter than all of them, are not the user's.
    assert ids(HotRoute("hot", window_hours=6.0).retrieve(ctx, 3), cat) == ["p1", "bare", "t1"]
    # Only the top category.
    assert ids(HotCategoryRoute("hot_category", cat, 6.0, categories=1).retrieve(ctx, 10), cat) == ["s1", "s2"]


def test_hot_category_has_nothing_for_clicks_without_a_category():
    cat = catalog()
    live = snapshot(cat, {6.0: HOT})
    route = HotCategoryRoute("hot_category", cat, window_hours=6.0)
    assert len(route.retrieve(RequestContext("u", NOW, recent_clicks=["bare", "nope"], live=live), 10)) == 0
    assert len(route.retrieve(RequestContext("u", NOW, live=live), 10)) == 0


def test_hot_category_needs_a_catalog_with_categories(settings):
    config = RouteConfig("hot_category", params={"window_hours": 2, "categories": 2})
    route = HotCategoryRoute.factory(ServingState.in_memory(settings, catalog(), {}), config)
    assert (route.window_hours, route.categories, route.windows) == (2.0, 2, (2.0,))
    assert HotCategoryRoute.factory(ServingState(settings), config) is None


def test_trending_puts_a_burst_before_a_steady_flow_and_fading_articles_last():
    cat = catalog()
    live = snapshot(cat, {
        1.0: {"s1": 6, "t1": 3, "p1": 1},
        6.0: {"s1": 7, "t1": 18, "p1": 1, "s2": 30},  # t1: 3 an hour all along; s2: nothing lately
    })
    route = TrendingRoute("trending", short_hours=1.0, long_hours=6.0)
    found = route.retrieve(RequestContext("anyone", NOW, live=live), 10)
    assert ids(found, cat) == ["s1", "p1", "t1", "s2"]
    expected = np.array([7, 1, 18, 30]) / 6
    assert found.scores.tolist() == pytest.approx(((np.array([6, 1, 3, 0]) - expected) / np.sqrt(expected + 1)).tolist(),
                                                  rel=1e-5)
    assert found.raw.tolist() == [6, 1, 3, 0]
    assert route.windows == (1.0, 6.0)
    # Plain hot ranks the steady and the fading first.
    assert ids(HotRoute("hot", window_hours=6.0).retrieve(RequestContext("anyone", NOW, live=live), 2), cat) == ["s2", "t1"]
