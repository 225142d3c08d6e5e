"""Real-time item CF in a real Redis: co-click pairs written by ``record_events`` (same user,
session window, partner cap), their decay and list caps, the request's second round trip that
reads them, the route's popularity normalisation and recency-weighted seeds, and the lists
coming back from SQL when Redis restarts empty. The nightly replay: tests/jobs/test_nightly_recovery.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from recall import sqlstore
from recall.catalog import ItemCatalog, ItemMeta
from recall.domain import HISTORY_SOURCE, ContextNeeds, EventRecord, RequestContext, to_unix
from recall.live import LiveSnapshot, WindowCounts
from recall.online import OnlineStore
from recall.rebuild import rebuild_if_empty
from recall.routes.base import RouteConfig
from recall.routes.itemcf import ItemCFRoute
from recall.service import RecallService
from recall.serving import ServingState
from tests.conftest import REDIS_URL
from tests.recall.test_online import CountingRedis, make_store  # noqa: F401 (a fixture)

T0 = datetime(2026, 11, 10, 12, 0)
NOW = to_unix(T0)
HOUR = 3600.0
NEEDS = ContextNeeds(co_click_seeds=10, co_click_depth=50)


def click(user: str, article: str, minutes: float, source: str = "api") -> EventRecord:
    return EventRecord(key=f"{user}:{article}:{minutes}", user_id=user, article_id=article, kind="click",
                       ts=T0 + timedelta(minutes=minutes), source=source)


def co_clicks(store: OnlineStore, article: str, now: float = NOW + HOUR) -> dict[str, float]:
    """An article's co-clicked articles with their counts decayed to ``now``, as a request reads
    them (through a reader whose only click is the article)."""
    reader = f"reader-of-{article}"
    store.r.zadd(store.k("u", reader, "clicks"), {article: NOW - 10 * HOUR})
    catalog = ItemCatalog()
    ctx = store.fetch_context(reader, now, catalog, NEEDS)
    store.r.delete(store.k("u", reader, "clicks"))
    rows, counts = ctx.co_clicks.get(article, (np.zeros(0, np.int32), np.zeros(0)))
    return {catalog.ids[r]: float(c) for r, c in zip(rows, counts)}


def test_a_click_pairs_with_the_same_users_clicks_of_the_session_window_before_it(make_store):
    store = make_store(itemcf_session_minutes=30, itemcf_half_life_hours=1e6)
    store.record_events([click("u1", "a", 0), click("u2", "other-user", 5), click("u1", "b", 10),
                         click("u1", "c", 45),  # 35 min after b: a new session
                         click("u1", "d", 50)])
    assert co_clicks(store, "a") == {"b": pytest.approx(1.0)}
    assert co_clicks(store, "b") == {"a": pytest.approx(1.0)}
    assert co_clicks(store, "c") == {"d": pytest.approx(1.0)}
    assert co_clicks(store, "other-user") == {}  # another user's clicks never pair
    # A click of the same moment (one impression) pairs too; clicking an article again does not pair it with itself.
    store.record_events([click("u3", "x", 0), click("u3", "y", 0), click("u3", "x", 1)])
    assert co_clicks(store, "x") == {"y": pytest.approx(2.0)}


def test_history_clicks_are_partners_of_live_clicks_but_pair_with_nothing_themselves(make_store):
    store = make_store(itemcf_half_life_hours=1e6)
    store.record_events([click("u", "h1", 0, source=HISTORY_SOURCE), click("u", "h2", 0.1, source=HISTORY_SOURCE),
                         click("u", "live", 1)])
    assert co_clicks(store, "live") == {"h1": pytest.approx(1.0), "h2": pytest.approx(1.0)}
    assert co_clicks(store, "h1") == {"live": pytest.approx(1.0)}  # not h2


def test_a_click_pairs_with_at_most_the_newest_partners(make_store):
    store = make_store(itemcf_partners=2, itemcf_half_life_hours=1e6)
    store.record_events([click("u", item, minute) for minute, item in enumerate("abcd")])
    assert set(co_clicks(store, "d")) == {"b", "c"}
    assert set(co_clicks(store, "a")) == {"b", "c"}  # b pairs with a; c with a and b


def test_co_click_counts_halve_every_half_life(make_store):
    store = make_store(itemcf_half_life_hours=2)
    store.record_events([click("u1", "a", 0), click("u1", "b", 1)])
    first = to_unix(T0 + timedelta(minutes=1))
    assert co_clicks(store, "a", now=first)["b"] == pytest.approx(1.0)
    assert co_clicks(store, "a", now=first + 2 * HOUR)["b"] == pytest.approx(0.5)
    assert co_clicks(store, "a", now=first + 6 * HOUR)["b"] == pytest.approx(0.125)
    # A later pair counts in full at its time: one increment, no list rewritten.
    store.record_events([click("u2", "a", 120), click("u2", "b", 121)])
    assert co_clicks(store, "a", now=first + 2 * HOUR)["b"] == pytest.approx(1.5)


def test_each_list_keeps_its_strongest_articles_and_expires(make_store):
    store = make_store(itemcf_cap=10, itemcf_half_life_hours=1e6)
    events = []
    for n in range(12):  # "hub" pairs with twelve articles; the first three twice
        for user in [f"u{n}", f"v{n}"] if n < 3 else [f"u{n}"]:
            events += [click(user, "hub", 0), click(user, f"p{n}", 1)]
    store.record_events(events)
    listed = co_clicks(store, "hub")
    assert len(listed) == 10 and store.r.zcard(store.k("icf", "hub")) == 10
    assert {"p0", "p1", "p2"} <= set(listed) and listed["p0"] == pytest.approx(2.0)
    assert 0 < store.r.ttl(store.k("icf", "hub")) <= 10 * 1e6 * 3600


def test_a_request_reads_the_co_click_lists_of_its_newest_clicks_in_its_second_round_trip(settings, online):
    client = CountingRedis.from_url(REDIS_URL)
    store = OnlineStore(client, settings)  # the test's prefix: the online fixture flushes it
    store.record_events([click("other", "a", 0), click("other", "b", 1), click("other", "c", 2),
                         click("reader", "a", 10), click("reader", "c", 20)])
    catalog = ItemCatalog()
    store_lists = ContextNeeds(clusters=True, list_kinds=("cf",), list_depth=5)

    def fetch(user, needs):
        before = CountingRedis.round_trips
        ctx = store.fetch_context(user, NOW + HOUR, catalog, needs)
        return ctx, CountingRedis.round_trips - before

    ctx, trips = fetch("reader", ContextNeeds())
    assert trips == 1 and ctx.co_clicks == {}
    ctx, trips = fetch("reader", NEEDS | store_lists)  # with the cluster lists: still two
    assert trips == 2 and set(ctx.co_clicks) == {"a", "c"}
    assert {catalog.ids[r] for r in ctx.co_clicks["c"][0]} == {"a", "b"}
    # Only the newest seeds, only as deep as declared.
    ctx, trips = fetch("reader", ContextNeeds(co_click_seeds=1, co_click_depth=1))
    assert trips == 2 and list(ctx.co_clicks) == ["c"] and len(ctx.co_clicks["c"][0]) == 1
    # A user without clicks costs one round trip.
    ctx, trips = fetch("nobody", NEEDS)
    assert trips == 1 and ctx.co_clicks == {}
    client.close()


# ---- the route -------------------------------------------------------------------------------------

def route_world(hot: dict[str, float]) -> tuple[ItemCatalog, LiveSnapshot]:
    ids = ["seed", "old-seed", "popular", "niche", "other", "unseen"]
    catalog = ItemCatalog({i: ItemMeta(category="news", published=NOW - HOUR) for i in ids})
    clicks = np.zeros(len(ids), np.float32)
    for item, n in hot.items():
        clicks[catalog.row_of[item]] = n
    return catalog, LiveSnapshot(NOW, {6.0: WindowCounts(6.0, clicks, clicks * 10)})


def context(catalog: ItemCatalog, live: LiveSnapshot, lists: dict[str, dict[str, float]],
            ages_hours: list[float]) -> RequestContext:
    seeds = list(lists)
    return RequestContext(
        user_id="reader", now=NOW, recent_clicks=seeds, click_times=[NOW - h * HOUR for h in ages_hours],
        co_clicks={seed: (catalog.rows(list(items)), np.array(list(items.values()))) for seed, items in lists.items()},
        live=live)


def ranked(route: ItemCFRoute, ctx: RequestContext, catalog: ItemCatalog) -> list[str]:
    return [c.item_id for c in route.retrieve(ctx, 10).to_list(route.name, catalog.ids)]


def test_popularity_normalisation_lifts_what_a_seed_pulls_beyond_plain_popularity():
    catalog, live = route_world({"popular": 15.0, "seed": 3.0})
    ctx = context(catalog, live, {"seed": {"popular": 4.0, "niche": 2.0}}, [1.0])
    raw = ItemCFRoute("itemcf", catalog, alpha=0.0)
    normalised = ItemCFRoute("itemcf", catalog, alpha=0.5)
    assert ranked(raw, ctx, catalog) == ["popular", "niche"]
    found = normalised.retrieve(ctx, 10)
    assert ranked(normalised, ctx, catalog) == ["niche", "popular"]
    # popular: 4 / sqrt(4 * 16) = 0.5; niche: 2 / sqrt(4 * 1) = 1; the seed is their provenance.
    assert found.raw.tolist() == pytest.approx([1.0, 0.5])
    assert {c.seed for c in found.to_list("itemcf", catalog.ids)} == {"seed"}


def test_seeds_are_summed_and_weighted_by_recency():
    catalog, live = route_world({})
    lists = {"seed": {"other": 1.0, "popular": 1.0}, "old-seed": {"niche": 1.5, "popular": 1.0}}
    route = ItemCFRoute("itemcf", catalog, seed_half_life_hours=24.0)
    found = route.retrieve(context(catalog, live, lists, [1.0, 49.0]), 10)
    listed = found.to_list("itemcf", catalog.ids)
    # popular: found by both seeds; other: by the recent one; niche: 1.5 from a seed two days older.
    assert [c.item_id for c in listed] == ["popular", "other", "niche"]
    recent, old = 0.5 ** (1 / 24), 0.5 ** (49 / 24)
    assert found.scores.tolist() == pytest.approx([recent + old, recent, 1.5 * old], rel=1e-5)
    assert [c.seed for c in listed] == ["seed", "seed", "old-seed"]
    # Only the newest ``seeds`` clicks seed it.
    assert set(ranked(ItemCFRoute("itemcf", catalog, seeds=1), context(catalog, live, lists, [1.0, 49.0]),
                      catalog)) == {"other", "popular"}


# ---- end to end: the click path, the request, a rebuild from SQL -------------------------------------

ARTICLES = ["s", "x", "y", "z"]


def served(settings, online) -> RecallService:
    now = to_unix(datetime.now(UTC).replace(tzinfo=None))
    catalog = ItemCatalog({a: ItemMeta(category="news", published=now - 20 * HOUR) for a in ARTICLES})
    return RecallService(online, ServingState.in_memory(settings, catalog, {}, version="v-test"))


def session_events(now: datetime) -> list[EventRecord]:
    """Two readers of s go on to x (one of them to y too); the reader clicks s later."""
    start = now - timedelta(hours=3)
    plan = [("r1", "s", 0), ("r1", "x", 5), ("r1", "y", 8), ("r2", "s", 30), ("r2", "x", 31),
            ("reader", "z", 60), ("reader", "s", 62)]
    return [EventRecord(key=f"{u}:{a}", user_id=u, article_id=a, kind="click", ts=start + timedelta(minutes=m))
            for u, a, m in plan]


def test_a_readers_next_request_gets_what_others_clicked_with_their_click(settings, online):
    service = served(settings, online)
    now = datetime.now(UTC).replace(tzinfo=None)
    service.record_events(session_events(now))
    result = service.recall("reader", 10, routes=["itemcf"], now=to_unix(now))
    assert [f.item_id for f in result.candidates] == ["x", "y"]  # s and z are seen
    assert [f.routes[0].seed for f in result.candidates] == ["s", "s"]
    assert result.routes["itemcf"].error is None


def test_an_empty_redis_gets_its_co_click_lists_back_from_sql(settings, sessions, online):
    service = served(settings, online)
    now = datetime.now(UTC).replace(tzinfo=None)
    events = session_events(now)
    service.record_events(events)
    with sessions() as session:
        sqlstore.insert_events(session, events)
        session.commit()
    read_at = to_unix(now)
    before = {a: co_clicks(online, a, read_at) for a in ARTICLES}
    assert set(before["s"]) == {"x", "y", "z"} and before["s"]["x"] > 1.5 * before["s"]["y"]  # two pairs, 3 h old

    online.flush_namespace()  # Redis restarted empty
    assert co_clicks(online, "s", read_at) == {}
    assert rebuild_if_empty(service, sessions) is True
    for article in ARTICLES:
        assert co_clicks(online, article, read_at) == pytest.approx(before[article], rel=1e-9)
    result = service.recall("reader", 10, routes=["itemcf"], now=read_at)
    assert [f.item_id for f in result.candidates] == ["x", "y"]


def test_the_route_is_built_from_its_config(settings):
    catalog = ItemCatalog({"a": ItemMeta(category="news")})
    state = ServingState.in_memory(settings, catalog, {})
    route = ItemCFRoute.factory(state, RouteConfig("itemcf", params={"seeds": 3, "depth": 40, "alpha": 0.2,
                                                                     "pop_window_hours": 2}))
    assert (route.seeds, route.depth, route.alpha, route.windows) == (3, 40, 0.2, (2.0,))
    assert route.needs == ContextNeeds(co_click_seeds=3, co_click_depth=40)
    assert ItemCFRoute.factory(ServingState(settings), RouteConfig("itemcf")) is None  # no build yet
