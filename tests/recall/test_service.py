"""The request path end to end on a hand-made build and a real Redis: filters and their drop
counts, fail-open routes, route selection, and Redis being down."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import pytest
import redis

from recall.catalog import ItemCatalog, ItemMeta
from recall.domain import EventRecord, to_unix
from recall.index import VectorIndex
from recall.online import OnlineStore
from recall.routes import ROUTES, default_configs
from recall.routes.base import NO_NEEDS
from recall.service import RecallService, UnknownRouteError
from recall.serving import ServingState

T0 = datetime(2026, 11, 10, 12, 0)
NOW = to_unix(T0)
HOUR = 3600.0

# Every neighbour is close to the seed (cosine > 0.9); "far" is orthogonal to it.
NEIGHBOURS = {
    "ok1": ItemMeta(category="sports", published=NOW - HOUR),
    "ok2": ItemMeta(category="sports", published=NOW - 2 * HOUR, expires=NOW + HOUR),
    "politics": ItemMeta(category="politics", published=NOW - HOUR),
    "seen": ItemMeta(category="sports", published=NOW - HOUR),
    "expired": ItemMeta(category="sports", published=NOW - 80 * HOUR, expires=NOW - HOUR),
    "future": ItemMeta(category="sports", published=NOW + HOUR),
    "editor_hidden": ItemMeta(category="sports", published=NOW - HOUR, hidden=True),
    "redis_hidden": ItemMeta(category="sports", published=NOW - HOUR),
}
SEED = "seed"


def event(article: str, kind: str, hours_ago: float, user: str = "reader") -> EventRecord:
    return EventRecord(key=f"{user}:{article}:{kind}:{hours_ago}", user_id=user, article_id=article,
                       kind=kind, ts=T0 - timedelta(hours=hours_ago))


@pytest.fixture
def state(settings) -> ServingState:
    # Budgets no loaded test machine misses: the budget tests set theirs ("budget_ms": 0).
    settings = settings.model_copy(update={"route_budget_ms": 10_000})
    rng = np.random.default_rng(1)
    base = np.zeros(16, np.float32)
    base[0] = 1
    ids = [SEED, *NEIGHBOURS, "far"]
    vectors = np.stack([base + rng.normal(scale=0.05, size=16) for _ in ids[:-1]]
                       + [np.eye(16, dtype=np.float32)[1]])
    catalog = ItemCatalog({SEED: ItemMeta(category="sports", published=NOW - 10 * HOUR), **NEIGHBOURS,
                           "far": ItemMeta(category="sports", published=NOW - HOUR)})
    return ServingState.in_memory(settings, catalog, {"tag2vec": VectorIndex.build(ids, vectors)}, version="v-test")


@pytest.fixture
def service(online, state) -> RecallService:
    online.record_events([event(SEED, "click", 3), event("seen", "impression", 2),
                          *[event("ok1", "click", 1, user=f"other{n}") for n in range(3)]])
    online.publish_articles([(i, m.published) for i, m in state.catalog.items()])
    online.set_hidden("redis_hidden", True)
    return RecallService(online, state)


def ids_of(result) -> set[str]:
    return {f.item_id for f in result.candidates}


def test_filters_drop_and_count_each_reason(service):
    result = service.recall("reader", 50, routes=["tag2vec"], now=NOW)
    assert ids_of(result) == {"ok1", "ok2", "politics"}
    reasons = {d.candidate.item_id: d.reason for d in result.retrieved.dropped_items()}
    assert reasons == {"seen": "seen", "expired": "expired", "future": "unpublished",
                       "editor_hidden": "hidden", "redis_hidden": "hidden"}
    assert result.dropped == {"seen": 1, "expired": 1, "unpublished": 1, "hidden": 2}
    run = result.routes["tag2vec"]
    assert run.error is None and run.count == len(NEIGHBOURS) and run.kept == 3
    assert result.version == "v-test" and result.cold is False
    for fused in result.candidates:
        assert [c.route for c in fused.routes] == ["tag2vec"] and fused.routes[0].seed == SEED
        assert fused.routes[0].raw_similarity >= 0.6


def test_category_filter(service):
    result = service.recall("reader", 50, routes=["tag2vec"], category="sports", now=NOW)
    assert ids_of(result) == {"ok1", "ok2"}
    assert result.dropped["category"] == 1
    # The category filter runs before the seen set: an unrelated category never reaches "seen".
    assert {d.reason for d in result.retrieved.dropped_items() if d.candidate.item_id == "politics"} == {"category"}


def test_all_enabled_routes_merge_with_every_route_filtered(service):
    result = service.recall("reader", 50, now=NOW)
    # Every route the hand-made build can serve: the fallbacks, tag2vec (the only index) and the
    # user-vector routes searching it, item CF and hot within the user's categories (the catalog's);
    # no user models, so no crosstag and no cluster routes.
    servable = {"tag2vec", "user2vec", "user_lstm", "itemcf", "hot_category", "trending", "hot", "shown", "fresh"}
    assert set(result.routes) == set(service.routes) == servable
    assert all(run.error is None for run in result.routes.values())
    # The fresh route lists every published article; filters still apply to it.
    assert not ids_of(result) & {SEED, "seen", "expired", "future", "editor_hidden", "redis_hidden"}
    assert {"ok1", "ok2", "politics", "far"} <= ids_of(result)
    ok1 = next(f for f in result.candidates if f.item_id == "ok1")
    assert {c.route for c in ok1.routes} == {"tag2vec", "hot", "hot_category", "trending", "fresh"}
    assert result.candidates[0].item_id == "ok1"


class Exploding:
    """A route that fails on every request."""

    kind = "fallback"
    needs = NO_NEEDS
    windows = ()

    def __init__(self, name: str):
        self.name = name

    def retrieve(self, ctx, n):
        raise RuntimeError("index on fire")


def test_a_failing_route_is_skipped_and_reported_while_others_serve(service):
    service.routes["hot"] = Exploding("hot")
    result = service.recall("reader", 50, now=NOW)
    assert result.routes["hot"].error == "RuntimeError"  # the message goes to the log
    assert result.routes["hot"].count == 0
    assert result.routes["tag2vec"].error is None and result.routes["fresh"].error is None
    assert {"ok1", "ok2", "politics"} <= ids_of(result)
    assert all(c.route != "hot" for f in result.candidates for c in f.routes)


def test_unknown_route_is_rejected(service):
    with pytest.raises(UnknownRouteError, match="no_such_route"):
        service.recall("reader", 10, routes=["tag2vec", "no_such_route"], now=NOW)
    with pytest.raises(UnknownRouteError):
        service.similar(SEED, "hot", 5)


def test_a_disabled_route_runs_only_when_asked_for_by_name(service):
    configs = default_configs()
    configs["hot"] = replace(configs["hot"], enabled=False)
    service.set_configs(configs)
    assert "hot" not in service.recall("reader", 50, now=NOW).routes
    asked = service.recall("reader", 50, routes=["hot"], now=NOW)
    assert list(asked.routes) == ["hot"] and asked.routes["hot"].count == len({SEED, "ok1"})  # the clicked ones
    assert ids_of(asked) == {"ok1"}  # the reader's own click is seen
    assert asked.dropped == {"seen": 1}


def test_a_build_without_an_index_serves_fallbacks_only(online, settings):
    service = RecallService(online, ServingState(settings))
    assert set(service.routes) == {name for name, spec in ROUTES.items() if spec.kind == "fallback"}
    assert service.recall("reader", 10, routes=["tag2vec"], now=NOW).candidates == []
    assert service.similar("x", "tag2vec", 5) == []


def test_similar_lists_an_articles_live_neighbours_above_the_floor(service):
    similar = service.similar(SEED, "tag2vec", 100, now=NOW)
    # Not yet published, expired or hidden neighbours are left out; "seen" is nobody's here.
    assert {c.item_id for c in similar} == {"ok1", "ok2", "politics", "seen"}
    assert [c.score for c in similar] == sorted((c.score for c in similar), reverse=True)
    assert len(service.similar(SEED, "tag2vec", 2, now=NOW)) == 2


def test_redis_down_means_an_empty_cold_answer_not_an_error(state, settings):
    client = redis.Redis.from_url("redis://127.0.0.1:6390/0", socket_timeout=1, socket_connect_timeout=1)
    store = OnlineStore(client, settings)
    service = RecallService(store, state)
    result = service.recall("reader", 10, now=NOW)
    assert result.candidates == [] and result.cold and result.degraded
    assert all(run.error is None for run in result.routes.values())
    # The user's context read counts one error in the store; the live snapshot its own.
    assert store.errors == 1 and service.pipeline.live.errors == 1 and service.pipeline.live.stale
    # Articles still answer /similar from the build (nothing there needs Redis).
    assert {c.item_id for c in service.similar(SEED, "tag2vec", 100, now=NOW)} >= {"ok1", "ok2", "politics"}
    client.close()


def test_a_click_this_process_records_counts_on_its_next_request(service):
    """The live snapshot is read once a minute in a replay; events this process records reach
    it at once (and the seen set at once, from Redis)."""
    before = service.recall("reader", 50, routes=["hot"], now=NOW)
    assert before.routes["hot"].count == 2  # SEED and ok1
    service.record_events([event("ok2", "click", 0.1, user=f"fan{n}") for n in range(5)]
                          + [event("politics", "click", 0.1, user="reader")])
    after = service.recall("reader", 50, routes=["hot"], now=NOW)
    assert after.candidates[0].item_id == "ok2" and after.candidates[0].routes[0].score == 5.0
    assert "politics" not in ids_of(after) and after.dropped["seen"] == 2
    assert after.retrieved.recent_clicks[0] == "politics"


def test_a_route_over_its_budget_times_out_and_the_others_answer(service):
    configs = default_configs()
    configs["tag2vec"] = replace(configs["tag2vec"], params={**configs["tag2vec"].params, "budget_ms": 0})
    service.set_configs(configs)
    result = service.recall("reader", 50, now=NOW)
    assert result.routes["tag2vec"].error == "timeout" and result.routes["tag2vec"].count == 0
    assert result.routes["hot"].error is None and result.candidates
    assert all(c.route != "tag2vec" for f in result.candidates for c in f.routes)
