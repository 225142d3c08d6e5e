"""Common checks over every registered route, in the spirit of scikit-learn's ``check_estimator``:
a route is checked the moment it is added to ``recall.routes.ROUTES``.

Everything runs on a hand-built world (``tests/recall/worlds.py``): no Redis, no nightly build.
If a route cannot be built from that world, the world lacks something the route needs: extend
the world rather than skip the route.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
import redis

from recall.domain import Candidates, ContextNeeds, Deadline, RouteTimeout
from recall.filters import apply_filters, request_filters
from recall.live import LiveSnapshot
from recall.online import OnlineStore
from recall.profiles import UserProfile
from recall.routes import ROUTES
from recall.routes.base import KINDS, NO_NEEDS, RouteConfig
from recall.service import RecallService
from tests.recall.worlds import NOW, UNINDEXED, check_candidates, make_world, restricted

NAMES = sorted(ROUTES)
PERSONAL = ("i2i", "u2i", "cluster")


@pytest.fixture(scope="module")
def world():
    return make_world(seed=3)


@pytest.fixture(scope="module")
def built(world):
    """Every registered route as the world serves it with its default config."""
    return {name: world.route(name) for name in NAMES}


@pytest.fixture
def route(built, name):
    route = built[name]
    assert route is not None, f"{name} cannot be built from the test world: the world lacks what it needs"
    return route


@pytest.mark.parametrize("name", NAMES)
def test_declares_what_it_is_and_what_it_reads(route, name):
    spec = ROUTES[name]
    assert route.name == name and route.kind == spec.kind and route.kind in KINDS
    assert isinstance(route.needs, ContextNeeds)
    assert isinstance(route.windows, tuple) and all(isinstance(h, float) and h > 0 for h in route.windows)
    if spec.user_vector:
        assert spec.user_vector in route.needs.vector_kinds
    if route.needs.list_kinds:
        assert route.needs.clusters and route.needs.list_depth > 0


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n", [0, 1, 5, 500])
def test_answers_honour_the_contract(world, route, name, n):
    ctx = world.context()
    found = route.retrieve(ctx, n)
    listed = check_candidates(found, n, route, world.catalog, ctx)
    if n:
        # The world has something for every route: the checks above must not hold vacuously.
        assert listed, f"{name} found nothing for the reader of the test world"
        assert UNINDEXED not in {c.item_id for c in listed}


@pytest.mark.parametrize("name", NAMES)
def test_a_route_that_has_more_than_n_gives_n(world, route, name):
    ctx = world.context()
    assert len(route.retrieve(ctx, 5)) == min(5, len(route.retrieve(ctx, 500)))


@pytest.mark.parametrize("name", NAMES)
def test_reads_nothing_it_does_not_declare(world, route, name):
    """The service fetches only what the routes declare (``needs``, ``windows``): a route
    answering differently on that context reads something nobody will fetch for it."""
    quota = ROUTES[name].default.quota
    full, narrow = world.context(), restricted(world.context(), route)
    a, b = route.retrieve(full, quota), route.retrieve(narrow, quota)
    np.testing.assert_array_equal(a.rows, b.rows)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.seeds, b.seeds)


@pytest.mark.parametrize("name", NAMES)
def test_the_answer_depends_on_the_context_not_on_earlier_requests(world, route, name):
    first = route.retrieve(world.context(), 50)
    route.retrieve(world.unknown(), 50)
    route.retrieve(world.context(recent_clicks=world.reader.recent_clicks[::-1]), 50)
    again = route.retrieve(world.context(), 50)
    np.testing.assert_array_equal(first.rows, again.rows)
    np.testing.assert_array_equal(first.scores, again.scores)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("fetched", [True, False], ids=["empty-profile", "no-profile"])
def test_an_unknown_user_gets_nothing_personal_and_the_fallbacks_still_serve(world, route, name, fetched):
    ctx = world.unknown(fetched=fetched)
    assert ctx.is_cold
    found = route.retrieve(ctx, 20)
    check_candidates(found, 20, route, world.catalog, ctx)
    if ROUTES[name].kind in PERSONAL:
        assert len(found) == 0
    else:
        assert 0 < len(found) <= 20


@pytest.mark.parametrize("name", NAMES)
def test_an_empty_context_with_an_empty_live_snapshot_works(world, route, name):
    ctx = world.unknown(live=LiveSnapshot(NOW), fetched=False)
    found = route.retrieve(ctx, 20)
    check_candidates(found, 20, route, world.catalog, ctx)
    if ROUTES[name].kind in PERSONAL:
        assert len(found) == 0


@pytest.mark.parametrize("name", NAMES)
def test_state_the_build_does_not_know_gives_nothing_personal(world, route, name):
    """Clicks on ids no index holds, user vectors of another dimension (a stale Redis key from
    an older build), profile tags without a tag vector and clusters of schemes or labels the
    build lacks give nothing personal, and no error."""
    ctx = world.context(recent_clicks=[UNINDEXED, "also-unknown"], click_times=[NOW - 60, NOW - 120],
                        user_vectors={k: np.ones(3, np.float32) for k in world.reader.user_vectors},
                        profile=UserProfile(tags={("sports", "no-such-tag"): 1.0}, categories={"sports": 1.0}),
                        clusters={"no-such-scheme": ["c0"], "kmeans-tag": ["no-such-label"]}, cluster_lists={})
    found = route.retrieve(ctx, 20)
    check_candidates(found, 20, route, world.catalog, ctx)
    if ROUTES[name].kind in PERSONAL:
        assert len(found) == 0


@pytest.mark.parametrize("name", NAMES)
def test_an_expired_deadline_stops_the_route_or_it_answers_quickly(world, route, name):
    ctx = world.context(deadline=Deadline(at=0))
    start = time.perf_counter()
    try:
        found = route.retrieve(ctx, 200)
    except RouteTimeout:
        return
    assert time.perf_counter() - start < 0.5  # milliseconds on this world; generous for loaded machines
    check_candidates(found, 200, route, world.catalog, ctx)


# ---- through the service: budgets ------------------------------------------------------------------

@pytest.fixture(scope="module")
def service(world):
    """A service over the world whose Redis does not exist: ``run_routes`` must never need it
    (routes do no I/O), and any attempt would fail loudly."""
    client = redis.Redis.from_url("redis://127.0.0.1:6390/0", socket_connect_timeout=0.2, socket_timeout=0.2)
    svc = RecallService(OnlineStore(client, world.settings), world.state)
    yield svc
    client.close()


def relaxed(service) -> dict[str, RouteConfig]:
    """Every route's config with a budget no test machine misses."""
    return {name: replace(config, params={**config.params, "budget_ms": 10_000})
            for name, config in service.configs.items()}


def test_the_service_builds_every_registered_route_from_the_world(service):
    assert set(service.routes) == set(ROUTES)


def answer(service, world, configs, routes=None):
    p = service.pipeline
    routes = routes or p.routes
    ctx = world.context()
    per_route, runs = service.run_routes(p, ctx, routes, configs)
    filtered = apply_filters(per_route, request_filters(ctx, world.catalog))
    fused, _ = service.merger.merge(filtered.kept, configs, 50, world.ids)
    return per_route, runs, fused


@pytest.mark.parametrize("name", NAMES)
def test_a_route_over_its_budget_is_reported_and_the_request_still_answers(world, service, name):
    configs = relaxed(service)
    configs[name] = replace(configs[name], params={**configs[name].params, "budget_ms": 0})
    per_route, runs, fused = answer(service, world, configs)
    assert runs[name].error == "timeout" and runs[name].count == 0 and len(per_route[name]) == 0
    assert all(run.error is None for other, run in runs.items() if other != name)
    assert fused and all(c.route != name for f in fused for c in f.routes)
    assert any(run.count for run in runs.values())


class Sleepy:
    """A route that answers, but too late."""

    kind = "fallback"
    needs = NO_NEEDS
    windows = ()

    def __init__(self, name: str, seconds: float):
        self.name, self.seconds = name, seconds

    def retrieve(self, ctx, n):
        time.sleep(self.seconds)
        return Candidates.of([0, 1], [2.0, 1.0], [0, 0], None, ["late"])


class Broken(Sleepy):
    def retrieve(self, ctx, n):
        raise KeyError("lost")


def test_a_slow_route_times_out_and_a_broken_one_fails_open(world, service):
    configs = relaxed(service)
    configs["hot"] = replace(configs["hot"], params={**configs["hot"].params, "budget_ms": 5})
    routes = {**service.routes, "hot": Sleepy("hot", 0.03), "fresh": Broken("fresh", 0)}
    per_route, runs, fused = answer(service, world, configs, routes)
    assert runs["hot"].error == "timeout" and runs["hot"].ms >= 30 and len(per_route["hot"]) == 0
    assert runs["fresh"].error == "KeyError" and len(per_route["fresh"]) == 0
    assert runs["tag2vec"].error is None and runs["tag2vec"].count > 0
    assert fused and not {c.route for f in fused for c in f.routes} & {"hot", "fresh"}
    # The deadline of the last route does not outlive the routes.
    ctx = world.context()
    service.run_routes(service.pipeline, ctx, {"hot": Sleepy("hot", 0)}, configs)
    assert ctx.deadline == Deadline()


def test_the_world_checks_catch_a_route_breaking_the_contract(world):
    """The checks themselves: an unsorted, duplicated or out-of-catalog answer fails them."""
    route = world.route("fresh")
    good = Candidates.of([0, 1, 2], [3.0, 2.0, 1.0], [0, 0, 0], None, ["published"])
    check_candidates(good, 3, route, world.catalog)
    for bad, n in [(Candidates.of([0, 1], [1.0, 2.0]), 5), (Candidates.of([0, 0], [2.0, 1.0]), 5),
                   (Candidates.of([0, len(world.catalog)], [2.0, 1.0]), 5),
                   (Candidates.of([0, 1], [2.0, 1.0], [0, 1], None, ["only-one"]), 5),
                   (Candidates.of([0, 1, 2], [3.0, 2.0, 1.0]), 2),
                   (Candidates.of([0, 1], [2.0, np.nan]), 5)]:
        with pytest.raises(AssertionError):
            check_candidates(bad, n, route, world.catalog)
