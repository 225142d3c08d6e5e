"""Routes. One check runs against every registered route (in the spirit of scikit-learn's
``check_estimator``) on a real small build: synthetic world -> SQLite -> nightly -> ServingState.
Then what each kind of route promises of its own."""

from __future__ import annotations

import math
import os
import uuid
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import redis
from rich.console import Console
from sqlalchemy import select

from jobs.ingest.synthetic import ingest_synthetic
from jobs.nightly import run_nightly
from recall.db import make_engine, make_sessionmaker, upgrade
from recall.domain import EventRecord, RequestContext, to_unix
from recall.models import JobRun
from recall.online import OnlineStore
from recall.routes import ROUTES
from recall.routes.base import RouteConfig
from recall.routes.fallback import FreshRoute, HotRoute
from recall.routes.i2i import EmbeddingI2IRoute
from recall.service import RecallService
from recall.serving import ServingState
from recall.settings import Settings
from recall.synthetic import SyntheticWorld, generate

REDIS_URL = os.environ.get("RECALL_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
START, DAYS = datetime(2026, 11, 1), 4
CUTOFF = START + timedelta(days=DAYS)
NOW = to_unix(CUTOFF)


@dataclass
class Build:
    world: SyntheticWorld
    settings: Settings
    online: OnlineStore
    state: ServingState
    service: RecallService
    steps: dict[str, JobRun]  # the nightly run's job_runs rows by step

    def route(self, name: str, **params):
        spec = ROUTES[name]
        config = RouteConfig(name, True, 1.0, 100, {**spec.default.params, **params})
        return spec.factory(self.state, config)


def with_media(world: SyntheticWorld, entity_file: Path) -> SyntheticWorld:
    """Give every article its topic's entity (random 100-d vectors written to ``entity_file`` in
    MIND's format) and the first articles the shared test images (each twice), so entity2vec and
    img2vec have inputs."""
    topics = sorted(set(world.article_topic.values()))
    rng = np.random.default_rng(0)
    entity_file.write_text("".join(f"Q{t}\t" + "\t".join(f"{x:.5f}" for x in rng.normal(size=100)) + "\n"
                                   for t in range(len(topics))))
    images = sorted((SHARED_DATA / "images").glob("*")) if (SHARED_DATA / "images").is_dir() else []
    articles = []
    for n, article in enumerate(world.articles):
        topic = topics.index(world.article_topic[article.id])
        entity = {"label": topics[topic], "type": "O", "wikidata_id": f"Q{topic}", "confidence": 1.0}
        image = str(images[n % len(images)]) if n < 2 * len(images) else None
        articles.append(replace(article, entities=(entity,), image_ref=image))
    return replace(world, articles=articles)


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Build:
    """Every encoder this machine can build, on one small world (short BERT inputs, few epochs:
    these tests check the route contract, not the quality of each encoder)."""
    tmp = tmp_path_factory.mktemp("routes")
    settings = Settings(_env_file=None, var_dir=tmp / "var", database_url=f"sqlite:///{tmp / 'recall.db'}",
                        redis_url=REDIS_URL, redis_prefix=f"t{uuid.uuid4().hex[:10]}:",
                        build_encoders="all", doc_max_length=32, title2vec_epochs=1, dssm_epochs=2,
                        entity_embeddings_path=str(tmp / "entity_embedding.vec"))
    world = with_media(generate(articles=160, users=60, days=DAYS, seed=21, start=START),
                       tmp / "entity_embedding.vec")
    engine = make_engine(settings.sqlalchemy_url)
    upgrade(engine)
    ingest_synthetic(engine, world, Console(quiet=True))
    client = redis.Redis.from_url(REDIS_URL)
    online = OnlineStore(client, settings)
    result = run_nightly(settings, engine, online, cutoff=CUTOFF)
    with make_sessionmaker(engine)() as session:
        steps = {r.step: r for r in session.scalars(select(JobRun).where(JobRun.run_id == result.run_id))}
    state = ServingState.load(settings)
    yield Build(world, settings, online, state, RecallService(online, state), steps)
    online.flush_namespace()
    client.close()
    engine.dispose()


@pytest.fixture(scope="module")
def active_users(build) -> list[str]:
    """The users with the most clicks in the last day before the cutoff."""
    last_day = Counter(e.user_id for e in build.world.events
                       if e.kind == "click" and CUTOFF - timedelta(days=1) <= e.ts < CUTOFF)
    return [u for u, _ in last_day.most_common(12)]


def served_or_skip(build: Build, name: str):
    """The route as the build serves it; a skip (with the reason) only when the build lacks what
    it needs on this machine: the nightly job skipped its encoder, or no article had the input."""
    spec = ROUTES[name]
    route = spec.factory(build.state, spec.default)
    if route is None:
        train = build.steps.get(f"train:{spec.encoder}")
        if train is not None and train.status == "skipped":
            pytest.skip(f"{name}: {train.metrics['skipped']}")
        index = build.steps.get(f"index:{name}")
        if index is not None and index.metrics.get("count") == 0:
            pytest.skip(f"{name}: no article of the synthetic world has an input for {spec.encoder}")
    assert route is not None, f"the build cannot serve {name}"
    return route


def contexts(build: Build, users: list[str], route) -> list[RequestContext]:
    """Active users' real contexts, plus one whose recent clicks are articles the route indexed
    (an i2i route over a sparse input, images say, has seeds for few real users)."""
    found = [build.service.context(u, now=NOW) for u in users]
    index = getattr(route, "index", None)
    if index is not None and len(index):
        reader = build.service.context(users[0], now=NOW)
        reader.recent_clicks = list(index.ids[:5])
        found.append(reader)
    return found


# ---- the common check: every registered route ------------------------------------------------

@pytest.mark.parametrize("name", sorted(ROUTES))
def test_every_registered_route_honours_the_route_contract(build, active_users, name):
    spec = ROUTES[name]
    route = served_or_skip(build, name)
    assert route.name == name and route.kind == spec.kind
    served = 0
    for ctx in contexts(build, active_users, route):
        assert ctx.recent_clicks  # the refresh put the user's clicks in Redis
        for n in (0, 1, 7, 60):
            candidates = route.retrieve(ctx, n)
            assert len(candidates) <= n
            scores = [c.score for c in candidates]
            assert all(math.isfinite(s) for s in scores) and scores == sorted(scores, reverse=True)
            assert len({c.item_id for c in candidates}) == len(candidates)
            for c in candidates:
                assert c.route == name and c.seed
                if spec.kind == "i2i":
                    assert c.seed in ctx.recent_clicks and c.item_id != c.seed
                    assert c.raw_similarity >= route.cosine_floor
            served += bool(candidates)
    if not served:  # the checks above held vacuously: say so rather than pass
        floor = getattr(route, "cosine_floor", None)
        pytest.xfail(f"{name} returned no candidates for any reader of this small world"
                     + (f" (no neighbour reaches its cosine floor {floor})" if floor is not None else ""))

    # Unknown (cold) users are tolerated: personal routes have nothing, fallbacks still serve.
    cold = build.service.context(f"nobody-{uuid.uuid4().hex}", now=NOW)
    assert cold.is_cold and not cold.user_vectors
    candidates = route.retrieve(cold, 20)
    if spec.kind in ("i2i", "u2i"):
        assert candidates == []
    elif spec.kind == "fallback":
        assert 0 < len(candidates) <= 20
    # A bare context (no online store behind it) is tolerated too.
    assert len(route.retrieve(RequestContext(user_id="bare", now=NOW), 20)) <= 20


def test_every_vector_route_is_built_or_skipped_with_a_reason(build):
    for name, spec in ROUTES.items():
        if spec.encoder is None:
            continue
        train = build.steps[f"train:{spec.encoder}"]
        assert train.status in ("ok", "skipped")
        if train.status == "skipped":
            assert train.metrics["skipped"] and name not in build.state.indexes
        else:
            assert build.state.manifest["routes"][name]["encoder"] == spec.encoder
            assert build.steps[f"index:{name}"].metrics["count"] == len(build.state.indexes[name])
    assert len(build.state.indexes["tag2vec"]) == len(build.state.catalog)


# ---- item-to-item --------------------------------------------------------------------------------

def test_i2i_neighbours_under_the_cosine_floor_are_dropped(build, active_users):
    default = build.route("tag2vec")
    strict = build.route("tag2vec", cosine_floor=0.99)
    assert strict.cosine_floor == 0.99
    loose_total = strict_total = 0
    for user in active_users:
        ctx = build.service.context(user, now=NOW)
        loose, tight = default.retrieve(ctx, 100), strict.retrieve(ctx, 100)
        assert all(c.raw_similarity >= 0.99 for c in tight)
        assert {c.item_id for c in tight} <= {c.item_id for c in loose}
        loose_total += len(loose)
        strict_total += len(tight)
    assert strict_total < loose_total


def test_i2i_seeds_are_the_most_recent_clicks_and_each_item_keeps_its_best_seed(build):
    route = build.route("tag2vec", seed_count=3)
    index = route.index
    rng = np.random.default_rng(0)
    clicked = list(rng.choice(index.ids, size=6, replace=False))
    ctx = RequestContext(user_id="x", now=NOW, recent_clicks=["not-in-the-index", *clicked])
    assert route.seeds(ctx) == clicked[:3]

    # Expected: for every article, its best cosine to any seed other than itself, over the floor.
    matrix = np.stack([index.vector(i) for i in index.ids])
    seeds = clicked[:3]
    cos = matrix @ matrix[[index.row_of[s] for s in seeds]].T  # (items, seeds)
    expected = {}
    for row, item in enumerate(index.ids):
        sims = [cos[row, k] for k, s in enumerate(seeds) if s != item and cos[row, k] >= route.cosine_floor]
        if sims:
            expected[item] = max(sims)
    everything = route.retrieve(ctx, len(index))
    assert {c.item_id: c.raw_similarity for c in everything} == pytest.approx(expected, abs=1e-5)
    for c in everything:
        assert c.seed in seeds and c.raw_similarity == pytest.approx(cos[index.row_of[c.item_id], seeds.index(c.seed)],
                                                                     abs=1e-5)
    top = route.retrieve(ctx, 10)
    assert [c.score for c in top] == pytest.approx(sorted(expected.values(), reverse=True)[:10], abs=1e-5)


def test_i2i_for_a_user_whose_clicks_have_no_vectors(build):
    route = build.route("tag2vec")
    ctx = RequestContext(user_id="x", now=NOW, recent_clicks=["unknown-1", "unknown-2"])
    assert route.seeds(ctx) == [] and route.retrieve(ctx, 10) == []


# ---- fallbacks -------------------------------------------------------------------------------

def test_hot_ranks_by_clicks_in_the_window_on_the_build(build):
    route = build.route("hot")
    candidates = route.retrieve(build.service.context("anyone", now=NOW), 1000)
    assert candidates

    def clicks_within(hours: float) -> Counter:
        return Counter(e.article_id for e in build.world.events
                       if e.kind == "click" and CUTOFF - timedelta(hours=hours) <= e.ts < CUTOFF)

    # Window boundaries fall on time buckets: the counts lie between those of an hour less and more.
    narrow, wide = clicks_within(route.window_hours - 1), clicks_within(route.window_hours + 1)
    for c in candidates:
        assert narrow[c.item_id] <= c.score <= wide[c.item_id]
    assert set(narrow) <= {c.item_id for c in candidates} <= set(wide)
    assert [c.score for c in candidates] == sorted((c.score for c in candidates), reverse=True)


def click(article: str, at: datetime, user: str) -> EventRecord:
    return EventRecord(key=f"{user}:{article}:{at.isoformat()}", user_id=user, article_id=article,
                       kind="click", ts=at)


def test_hot_ranks_by_window_clicks(online):
    t0 = datetime(2026, 11, 10, 12)
    events = [click(item, t0 - timedelta(hours=hours), f"u{n}")
              for item, count, hours in [("two", 2, 3), ("three", 3, 5), ("one", 1, 1), ("stale", 9, 30)]
              for n in range(count)]
    online.record_events(events)
    ctx = RequestContext(user_id="x", now=to_unix(t0), window_stats=lambda h: online.window_stats(to_unix(t0), h))
    hot = HotRoute("hot", window_hours=24).retrieve(ctx, 10)
    assert [(c.item_id, c.score) for c in hot] == [("three", 3.0), ("two", 2.0), ("one", 1.0)]
    assert [c.item_id for c in HotRoute("hot", window_hours=48).retrieve(ctx, 2)] == ["stale", "three"]
    assert HotRoute("hot", window_hours=24).retrieve(ctx, 0) == []


def test_fresh_lists_the_newest_live_articles_first_on_the_build(build):
    candidates = build.route("fresh").retrieve(build.service.context("anyone", now=NOW), 50)
    live = sorted((a for a in build.world.articles
                   if a.published_at < CUTOFF and (a.expires_at is None or a.expires_at > CUTOFF)),
                  key=lambda a: a.published_at, reverse=True)
    assert [c.item_id for c in candidates] == [a.id for a in live[:50]]
    scores = [c.score for c in candidates]
    assert all(0 < s <= 1 for s in scores) and scores == sorted(scores, reverse=True)


def test_fresh_is_newest_first_and_never_lists_the_future(online):
    now = 1_800_000_000.0
    online.publish_articles([("old", now - 86_400), ("new", now - 60), ("mid", now - 3600), ("later", now + 60)])
    ctx = RequestContext(user_id="x", now=now, fresh=lambda n: online.fresh(now, n))
    fresh = FreshRoute("fresh", half_life_hours=24).retrieve(ctx, 10)
    assert [c.item_id for c in fresh] == ["new", "mid", "old"]
    assert fresh[-1].score == pytest.approx(0.5)  # one half-life old


def test_route_kinds_are_checked():
    from recall.routes.base import RouteSpec

    with pytest.raises(ValueError, match="kind"):
        RouteSpec("x", "magic", EmbeddingI2IRoute.factory, RouteConfig("x"))
