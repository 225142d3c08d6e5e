"""Routes on the synthetic world, with the user state a real Redis holds.

The build is made in memory (``ServingState.in_memory``): a tag2vec-like index where every
article is the weighted sum of its tags' vectors and tags of one topic point the same way (what
a trained tag2vec learns on this world), user models with tag vectors and two cluster schemes.
Redis is filled as the nightly job leaves it at the cutoff (fresh list, hot counts, recent
clicks, seen sets; ``jobs/nightly.refresh_online``) and the world's clicks go through the click
path (profiles, user vectors, memberships, CF lists). Training and building every encoder is
tests/jobs' business (test_nightly_all_encoders.py); the contract every registered route honours
is checked without Redis in test_route_checks.py.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pytest
import redis

from recall import buildkeys
from recall.catalog import ItemCatalog, ItemMeta
from recall.clustering import ClusterModel
from recall.clusterstore import ClusterStore, SchemeSummary
from recall.domain import Candidates, EventRecord, RequestContext, to_unix
from recall.index import VectorIndex, normalise
from recall.live import LiveState
from recall.online import OnlineStore
from recall.rebuild import mark_whole
from recall.routes import ROUTES
from recall.routes.base import RouteConfig, RouteSpec
from recall.routes.fallback import FreshRoute, HotRoute
from recall.routes.i2i import EmbeddingI2IRoute
from recall.service import RecallService
from recall.serving import ServingState
from recall.settings import Settings
from recall.synthetic import SyntheticWorld, generate
from recall.uservectors import TagVectors, UserModels
from tests.conftest import REDIS_URL
from tests.recall.worlds import check_candidates

START, DAYS = datetime(2026, 11, 1), 4
CUTOFF = START + timedelta(days=DAYS)
NOW = to_unix(CUTOFF)
# What this build serves: every route over the tag2vec index, the user models and the live
# snapshot (and the co-click lists). user_lstm is built but has no vectors (no LSTM in the build):
# it answers nothing.
SERVED = {"tag2vec", "user2vec", "user_lstm", "crosstag", "cluster_cf", "cluster_centre", "group_profile",
          "itemcf", "hot_category", "trending", "hot", "shown", "fresh"}


@dataclass
class Build:
    world: SyntheticWorld
    settings: Settings
    online: OnlineStore
    state: ServingState
    service: RecallService

    def route(self, name: str, **params):
        spec = ROUTES[name]
        config = RouteConfig(name, True, 1.0, 100, {**spec.default.params, **params})
        return spec.factory(self.state, config)

    def context(self, user: str, route) -> RequestContext:
        """What a request for this route alone reads, as the service reads it."""
        return self.service.context(self.service.pipeline, user, {route.name: route}, now=NOW)

    def ids(self, found: Candidates, name: str = "r") -> list[str]:
        return [c.item_id for c in found.to_list(name, self.state.catalog.ids)]


def tag_space(world: SyntheticWorld, dim: int = 16, seed: int = 5) -> tuple[TagVectors, dict[str, np.ndarray]]:
    """Tag vectors near their topic's direction (generic tags anywhere), and each topic's."""
    rng = np.random.default_rng(seed)
    topics = sorted(set(world.article_topic.values()))
    centre = dict(zip(topics, normalise(rng.normal(size=(len(topics), dim)))))
    tags = sorted({t for a in world.articles for t, _ in a.tags})
    vectors = np.stack([centre[t.split("_")[0]] + rng.normal(scale=0.25, size=dim) if t.split("_")[0] in centre
                        else 0.5 * rng.normal(size=dim) for t in tags]).astype(np.float32)
    return TagVectors(tags, vectors), centre


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Build:
    tmp = tmp_path_factory.mktemp("routes")
    settings = Settings(_env_file=None, var_dir=tmp / "var", redis_url=REDIS_URL,
                        redis_prefix=f"t{uuid.uuid4().hex[:10]}:", route_budget_ms=10_000)
    world = generate(articles=160, users=60, days=DAYS, seed=21, start=START)
    catalog = ItemCatalog({a.id: ItemMeta.of(a) for a in world.articles})
    tag_vectors, topic_centre = tag_space(world)
    ids = [a.id for a in world.articles]
    index = VectorIndex.build(ids, np.stack([tag_vectors.weighted_sum(list(a.tags)) for a in world.articles]),
                              route="tag2vec")
    categories = sorted({a.category for a in world.articles})
    by_category = normalise(np.stack([
        sum(topic_centre[t] for t in {world.article_topic[a.id] for a in world.articles if a.category == c})
        for c in categories]))
    clusters = {
        "kmeans-tag": ClusterModel("kmeans-tag", "kmeans", "tag", [f"c{k}" for k in range(len(categories))],
                                   "tag2vec", centres=by_category, group_vectors=by_category),
        "rule": ClusterModel("rule", "rule", None, sorted(topic_centre), "tag2vec", top_k=1),
    }
    # The nightly job's centre lists: the articles nearest each k-means centre (the build holds them).
    model = clusters["kmeans-tag"]
    model.centre_lists = {label: [(index.ids[r], float(s)) for r, s in zip(*(x[0] for x in index.search(centre, 30)))]
                          for label, centre in zip(model.labels, model.centres)}
    users = UserModels(tag_vectors, categories, None, clusters, settings.profile_top_tags, settings.user_vector_clicks)
    state = ServingState.in_memory(settings, catalog, {"tag2vec": index}, users, version="synthetic")
    client = redis.Redis.from_url(REDIS_URL)
    online = OnlineStore(client, settings)
    # The world's last hour may show nothing: "shown" counts the same 6 hours as hot here.
    shown = ROUTES["shown"].default
    service = RecallService(online, state, {"shown": RouteConfig(
        "shown", shown.enabled, shown.weight, shown.quota, {**shown.params, "window_hours": 6.0})})

    # Redis as the nightly job leaves it at the cutoff...
    mark_whole(online, "tests")
    online.replace_fresh([(a.id, to_unix(a.published_at)) for a in world.articles if a.status == "active"
                          and (a.expires_at is None or a.expires_at > CUTOFF)])
    store = ClusterStore(online, state.version)  # the admin pages' copy of each scheme
    for scheme, m in clusters.items():
        store.write_scheme(SchemeSummary(scheme, m.kind, m.vector_kind, len(m.labels), None, None, []),
                           {}, [], m.centre_lists)
    buildkeys.mark_complete(online, state.version, "tests")
    # ... and every event through the click path: profiles, vectors, memberships, CF lists.
    events = [e for e in world.events if e.ts < CUTOFF]
    for start in range(0, len(events), 1000):
        service.record_events(events[start:start + 1000])
    yield Build(world, settings, online, state, service)
    service.close()
    online.flush_namespace()
    client.close()


@pytest.fixture(scope="module")
def active_users(build) -> list[str]:
    """The users with the most clicks in the last day before the cutoff."""
    last_day = Counter(e.user_id for e in build.world.events
                       if e.kind == "click" and CUTOFF - timedelta(days=1) <= e.ts < CUTOFF)
    return [u for u, _ in last_day.most_common(12)]


# ---- every route this build serves, on contexts read from Redis ------------------------------------

def test_the_build_serves_the_routes_its_artefacts_allow(build):
    assert set(build.service.routes) == SERVED


@pytest.mark.parametrize("name", sorted(SERVED))
def test_every_served_route_honours_the_contract_on_real_contexts(build, active_users, name):
    route = build.service.routes[name]
    spec = ROUTES[name]
    served = 0
    for user in active_users:
        ctx = build.context(user, route)
        assert ctx.recent_clicks and not ctx.degraded  # the click path put the user's state in Redis
        if route.needs.clusters:
            assert ctx.clusters, f"{user} has no cluster"
        for n in (0, 1, 7, 60):
            found = route.retrieve(ctx, n)
            served += bool(len(check_candidates(found, n, route, build.state.catalog, ctx)))
    if name == "user_lstm":
        assert served == 0  # no LSTM in this build: no user vector of its kind
    else:
        assert served, f"{name} returned nothing for any active reader"

    # Unknown (cold) users are tolerated: personal routes have nothing, fallbacks still serve.
    cold = build.context(f"nobody-{uuid.uuid4().hex}", route)
    assert cold.is_cold and not cold.user_vectors and not cold.clusters
    found = route.retrieve(cold, 20)
    check_candidates(found, 20, route, build.state.catalog, cold)
    assert (len(found) == 0) if spec.kind != "fallback" else (0 < len(found) <= 20)


def test_a_users_own_clicks_come_back_from_their_clusters_and_are_filtered_as_seen(build, active_users):
    """The CF lists hold what the cluster clicked, the user's clicks among them: the seen filter
    takes those out (which is why cluster routes read ``LIST_SPARE`` more than their quota)."""
    result = build.service.recall(active_users[0], 200, routes=["cluster_cf"], now=NOW)
    retrieved = result.retrieved
    clicked = set(retrieved.recent_clicks)
    assert result.routes["cluster_cf"].count > result.routes["cluster_cf"].kept
    assert {d.candidate.item_id for d in retrieved.dropped_items() if d.reason == "seen"} & clicked
    assert not {f.item_id for f in result.candidates} & clicked


# ---- item-to-item --------------------------------------------------------------------------------

def test_i2i_neighbours_under_the_cosine_floor_are_dropped(build, active_users):
    default = build.route("tag2vec")
    strict = build.route("tag2vec", cosine_floor=0.95)
    assert strict.cosine_floor == 0.95
    loose_total = strict_total = 0
    for user in active_users:
        ctx = build.context(user, default)
        loose, tight = default.retrieve(ctx, 100), strict.retrieve(ctx, 100)
        assert np.all(tight.raw >= 0.95) and np.all(loose.raw >= default.cosine_floor)
        assert set(tight.rows.tolist()) <= set(loose.rows.tolist())
        loose_total += len(loose)
        strict_total += len(tight)
    assert 0 < strict_total < loose_total


def test_i2i_seeds_are_the_most_recent_clicks_and_each_item_keeps_its_best_seed(build):
    route = build.route("tag2vec", seed_count=3)
    index = route.index
    rng = np.random.default_rng(0)
    clicked = [str(i) for i in rng.choice(index.ids, size=6, replace=False)]
    ctx = RequestContext(user_id="x", now=NOW, recent_clicks=["not-in-the-index", *clicked])
    seeds = clicked[:3]
    everything = route.retrieve(ctx, len(index))
    assert list(everything.seed_labels) == seeds  # the three most recent clicks the index holds

    # Expected: for every article, its cosines to the seeds other than itself, over the floor.
    matrix = np.stack([index.vector(i) for i in index.ids])
    cos = matrix @ matrix[[index.row_of[s] for s in seeds]].T  # (items, seeds)
    expected = {}
    for row, item in enumerate(index.ids):
        sims = [cos[row, k] for k, s in enumerate(seeds) if s != item and cos[row, k] >= route.cosine_floor]
        if sims:
            expected[item] = (sum(sims), max(sims))
    found = {c.item_id: c for c in everything.to_list("tag2vec", build.state.catalog.ids)}
    assert {i: c.raw_similarity for i, c in found.items()} == pytest.approx({i: m for i, (_, m) in expected.items()},
                                                                            abs=1e-5)
    assert {i: c.score for i, c in found.items()} == pytest.approx({i: s for i, (s, _) in expected.items()}, abs=1e-5)
    for c in found.values():
        assert c.seed in seeds and c.raw_similarity == pytest.approx(cos[index.row_of[c.item_id], seeds.index(c.seed)],
                                                                     abs=1e-5)
    top = route.retrieve(ctx, 10)
    assert top.scores.tolist() == pytest.approx(sorted((s for s, _ in expected.values()), reverse=True)[:10], abs=1e-5)


def test_i2i_for_a_user_whose_clicks_have_no_vectors(build):
    route = build.route("tag2vec")
    ctx = RequestContext(user_id="x", now=NOW, recent_clicks=["unknown-1", "unknown-2"])
    assert len(route.retrieve(ctx, 10)) == 0
    assert len(route.similar("unknown-1", 10)) == 0


# ---- fallbacks -------------------------------------------------------------------------------

def test_hot_ranks_by_clicks_in_the_window_on_the_build(build):
    route = build.route("hot")
    found = route.retrieve(build.context("anyone", route), 1000)
    assert len(found)
    scores = dict(zip(build.ids(found), found.scores.tolist()))

    def clicks_within(hours: float) -> Counter:
        return Counter(e.article_id for e in build.world.events
                       if e.kind == "click" and CUTOFF - timedelta(hours=hours) <= e.ts < CUTOFF)

    # Window boundaries fall on time buckets: the counts lie between those of an hour less and more.
    narrow, wide = clicks_within(route.window_hours - 1), clicks_within(route.window_hours + 1)
    for item, score in scores.items():
        assert narrow[item] <= score <= wide[item]
    assert set(narrow) <= set(scores) <= set(wide)
    assert found.scores.tolist() == sorted(found.scores.tolist(), reverse=True)


def click(article: str, at: datetime, user: str, kind: str = "click") -> EventRecord:
    return EventRecord(key=f"{user}:{article}:{kind}:{at.isoformat()}", user_id=user, article_id=article,
                       kind=kind, ts=at)


def test_hot_ranks_by_window_clicks(online):
    t0 = datetime(2026, 11, 10, 12)
    now = to_unix(t0)
    events = [click(item, t0 - timedelta(hours=hours), f"u{n}")
              for item, count, hours in [("two", 2, 3), ("three", 3, 5), ("one", 1, 1), ("stale", 9, 30)]
              for n in range(count)]
    online.record_events(events)
    catalog = ItemCatalog()
    ctx = RequestContext(user_id="x", now=now, live=LiveState(online, catalog, [24, 48]).get(now))

    def listed(route, n):
        found = route.retrieve(ctx, n)
        return [(c.item_id, c.score) for c in found.to_list(route.name, catalog.ids)]

    assert listed(HotRoute("hot", window_hours=24), 10) == [("three", 3.0), ("two", 2.0), ("one", 1.0)]
    assert [i for i, _ in listed(HotRoute("hot", window_hours=48), 2)] == ["stale", "three"]
    assert listed(HotRoute("hot", window_hours=24), 0) == []
    assert HotRoute("hot", window_hours=24).windows == (24.0,)
    # A window the snapshot does not count gives nothing (the service asks for the routes' windows).
    assert listed(HotRoute("hot", window_hours=12), 10) == []


def test_hot_with_ctr_power_prefers_the_better_clicked_of_equally_clicked(online):
    t0 = datetime(2026, 11, 10, 12)
    now = to_unix(t0)
    events = [click(item, t0 - timedelta(hours=1), f"u{n}") for item in ("seen_a_lot", "seen_little") for n in range(5)]
    events += [click("seen_a_lot", t0 - timedelta(hours=1), f"v{n}", "impression") for n in range(200)]
    events += [click("seen_little", t0 - timedelta(hours=1), f"v{n}", "impression") for n in range(10)]
    online.record_events(events)
    catalog = ItemCatalog()
    ctx = RequestContext(user_id="x", now=now, live=LiveState(online, catalog, [6]).get(now))
    by_clicks = HotRoute("hot", window_hours=6).retrieve(ctx, 10)
    by_ctr = HotRoute("hot", window_hours=6, ctr_power=1.0).retrieve(ctx, 10)
    assert by_clicks.scores.tolist() == [5.0, 5.0]
    assert [catalog.ids[r] for r in by_ctr.rows] == ["seen_little", "seen_a_lot"]
    assert by_ctr.raw.tolist() == [5.0, 5.0]  # the click count stays on each candidate


def test_shown_ranks_by_impressions_in_its_window_newest_first_on_ties(online):
    t0 = datetime(2026, 11, 10, 12)
    now = to_unix(t0)
    shown = [("everywhere", 6, 0.5), ("clicked", 1, 0.5), ("old_tie", 3, 0.5), ("new_tie", 3, 0.5), ("stale", 9, 3)]
    events = [click(item, t0 - timedelta(hours=hours), f"v{n}", "impression")
              for item, count, hours in shown for n in range(count)]
    events += [click("clicked", t0 - timedelta(hours=0.5), f"u{n}") for n in range(5)]
    online.record_events(events)
    catalog = ItemCatalog()
    for item, published in [("old_tie", now - 7200), ("new_tie", now - 3600)]:
        catalog.put(item, ItemMeta(published=published))
    ctx = RequestContext(user_id="x", now=now, live=LiveState(online, catalog, [1]).get(now))
    route = HotRoute("shown", window_hours=1, count="impressions")
    found = route.retrieve(ctx, 10)
    assert [catalog.ids[r] for r in found.rows] == ["everywhere", "new_tie", "old_tie", "clicked"]
    assert found.scores.tolist() == [6.0, 3.0, 3.0, 1.0]
    assert found.to_list("shown", catalog.ids)[0].seed == "impressions_1h"
    with pytest.raises(ValueError, match="count must be one of"):
        HotRoute("shown", count="views")


def test_fresh_lists_the_newest_live_articles_first_on_the_build(build):
    route = build.route("fresh")
    found = route.retrieve(build.context("anyone", route), 50)
    live = sorted((a for a in build.world.articles
                   if a.published_at < CUTOFF and (a.expires_at is None or a.expires_at > CUTOFF)),
                  key=lambda a: a.published_at, reverse=True)
    assert build.ids(found) == [a.id for a in live[:50]]
    scores = found.scores.tolist()
    assert all(0 < s <= 1 for s in scores) and scores == sorted(scores, reverse=True)


def test_fresh_is_newest_first_and_never_lists_the_future(online):
    now = 1_800_000_000.0
    online.publish_articles([("old", now - 86_400), ("new", now - 60), ("mid", now - 3600), ("later", now + 60)])
    catalog = ItemCatalog()
    live = LiveState(online, catalog)
    ctx = RequestContext(user_id="x", now=now, live=live.get(now))
    route = FreshRoute("fresh", half_life_hours=24)
    found = route.retrieve(ctx, 10)
    assert [catalog.ids[r] for r in found.rows] == ["new", "mid", "old"]
    assert found.scores[-1] == pytest.approx(0.5)  # one half-life old
    # An article this process publishes for later is in the snapshot at once, but not listed yet.
    live.publish([("scheduled", now + 3600), ("just_now", now - 1)])
    assert [catalog.ids[r] for r in route.retrieve(ctx, 2).rows] == ["just_now", "new"]
    later = RequestContext(user_id="x", now=now + 7200, live=live.get(now))
    assert [catalog.ids[r] for r in route.retrieve(later, 1).rows] == ["scheduled"]


def test_route_kinds_are_checked():
    with pytest.raises(ValueError, match="kind"):
        RouteSpec("x", "magic", EmbeddingI2IRoute.factory, RouteConfig("x"))
