"""The nightly rebuild end to end: synthetic world -> SQL -> train, embed, index, publish ->
Redis refresh. Real SQLite/PostgreSQL, Redis, fastText and FAISS."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta

import numpy as np
import pytest
import ray
from rich.console import Console
from sqlalchemy import select, update

from encoders.registry import load_encoder
from jobs.ingest.synthetic import ingest_synthetic
from jobs.nightly import load_corpus, run_nightly, vector_routes
from recall import sqlstore
from recall.db import make_sessionmaker
from recall.domain import to_unix
from recall.index import BuildStore
from recall.live import LiveState
from recall.models import Article, JobRun
from recall.routes import ROUTES
from recall.service import RecallService
from recall.serving import ServingState
from recall.synthetic import generate

START, DAYS = datetime(2026, 11, 1), 3
CUTOFF = START + timedelta(days=DAYS) - timedelta(hours=2)  # some events and articles come after it
NOW = to_unix(CUTOFF)


@pytest.fixture(scope="module")
def world():
    return generate(articles=300, users=40, days=DAYS, seed=13, start=START)


@pytest.fixture
def db(sqlite_engine, world):
    ingest_synthetic(sqlite_engine, world, Console(quiet=True))
    return sqlite_engine


def built_routes(settings) -> dict[str, str]:
    """route -> encoder for the vector routes these settings ask the nightly job to build."""
    wanted = settings.build_encoders
    return {route: encoder for route, encoder in vector_routes().items()
            if wanted == "all" or encoder in wanted.split(",")}


def expected_steps(settings) -> list[str]:
    steps = ["load"]
    for route, encoder in built_routes(settings).items():
        steps += [f"train:{encoder}", f"embed:{encoder}", f"index:{route}"]
        if ROUTES[route].kind == "i2i":
            steps.append(f"neighbours:{route}")
    clusters = [f"clusters:kmeans-{kind}" for kind in settings.cluster_kinds.split(",")] + ["clusters:rule",
                                                                                            "clusters:profiles"]
    return [*steps, "catalog", "users:profiles", "users:vectors", *clusters, "publish", "online"]


def skippable(settings) -> set[str]:
    """Steps a small tag2vec-only world may skip: DSSM clusters without a DSSM build, and rule
    clusters when no interest combination reaches the size threshold."""
    steps = {"clusters:rule"}
    if "dssm" not in built_routes(settings):
        steps.add("clusters:kmeans-dssm")
    return steps


def job_rows(engine, run_id: str | None = None) -> list[JobRun]:
    with make_sessionmaker(engine)() as session:
        query = select(JobRun).order_by(JobRun.id)
        if run_id is not None:
            query = query.where(JobRun.run_id == run_id)
        return list(session.scalars(query))


def known_articles(world) -> list:
    return [a for a in world.articles if a.published_at < CUTOFF]


def expected_recent_clicks(world, user: str, cap: int) -> list[str]:
    clicks = sorted((e for e in world.events if e.user_id == user and e.kind == "click" and e.ts < CUTOFF),
                    key=lambda e: e.ts, reverse=True)
    return list(dict.fromkeys(e.article_id for e in clicks))[:cap]


def test_a_run_publishes_a_complete_build(settings, db, online, world):
    result = run_nightly(settings, db, online, cutoff=CUTOFF)
    store = BuildStore(settings.builds_dir)
    assert store.active_version() == result.version == result.run_id
    assert not list(settings.builds_dir.glob(".tmp-*"))

    manifest = json.loads((store.active_dir() / "manifest.json").read_text())
    assert manifest["version"] == result.version and manifest["cutoff"] == CUTOFF.isoformat()
    assert "tag2vec" in built_routes(settings) and set(manifest["routes"]) == set(built_routes(settings))
    with_tags = [a for a in known_articles(world) if any(t.strip() for t, _ in a.tags)]
    assert len(with_tags) < len(world.articles)  # the cutoff really leaves some articles out
    tag2vec = manifest["routes"]["tag2vec"]
    assert tag2vec["count"] == len(with_tags)
    assert tag2vec["encoder"] == "tag2vec" and tag2vec["encoder_version"] == manifest["encoders"]["tag2vec"]
    assert (store.active_dir() / "models" / "tag2vec").is_dir()

    rows = job_rows(db, result.run_id)
    assert [r.step for r in rows] == expected_steps(settings)
    for row in rows:
        assert row.status == "ok" or (row.step in skippable(settings) and row.status == "skipped"), row.step
        assert row.error is None and row.finished_at >= row.started_at
        assert row.artefact_version == result.version and row.job == "nightly"
    embed = next(r for r in rows if r.step == "embed:tag2vec")
    assert embed.metrics["items"] == len(known_articles(world)) and embed.metrics["items_per_second"] > 0
    load = next(r for r in rows if r.step == "load")
    assert load.metrics["articles"] == len(known_articles(world))

    state = ServingState.load(settings)
    assert state.version == result.version and len(state.indexes["tag2vec"]) == len(with_tags)
    assert len(state.catalog) == len(known_articles(world))
    assert all(a.id in state.catalog for a in known_articles(world))


def test_every_step_names_its_ray_nodes_and_workers_embed_what_this_process_would(settings, db, online):
    through_data = settings.model_copy(update={"embed_dataset_min": 0})  # Ray Data's actor pool
    result = run_nightly(through_data, db, online, cutoff=CUTOFF)
    here = ray.get_runtime_context().get_node_id()  # the session's one-node Ray
    rows = job_rows(db, result.run_id)
    assert [(r.step, r.metrics["nodes"]) for r in rows] == [(r.step, [here]) for r in rows]
    embed = next(r for r in rows if r.step == "embed:tag2vec")
    assert embed.metrics["encoded"] == embed.metrics["items"] > 0

    cached = np.load(next((settings.var_dir / "cache" / "embeddings" / "tag2vec").glob("*.npz")))
    with make_sessionmaker(db)() as session:
        articles = {a.id: a for a in sqlstore.iter_articles(session)}
    encoder = load_encoder("tag2vec", BuildStore(settings.builds_dir).active_dir() / "models" / "tag2vec")
    np.testing.assert_array_equal(cached["vectors"], encoder.encode([articles[i] for i in cached["ids"]]))


def test_the_corpus_read_in_parts_is_the_corpus_read_whole(settings, db, world):
    whole, _ = load_corpus(settings, db, CUTOFF)
    small_parts = settings.model_copy(update={"nightly_partition_articles": 40, "nightly_partition_users": 7})
    parts, nodes = load_corpus(small_parts, db, CUTOFF)
    assert len(whole.articles) == len(known_articles(world)) and len(whole.click_sequences) > 7
    assert parts == whole
    assert list(parts.articles) == list(whole.articles)
    assert list(parts.click_sequences) == list(whole.click_sequences)
    assert nodes == [ray.get_runtime_context().get_node_id()]


def test_the_redis_refresh_restores_clicks_seen_and_fresh(settings, db, online, world):
    run_nightly(settings, db, online, cutoff=CUTOFF)
    users = sorted({e.user_id for e in world.events if e.kind == "click" and e.ts < CUTOFF})
    assert len(users) > 10
    for user in users:
        expected = expected_recent_clicks(world, user, settings.recent_clicks_cap)
        assert online.fetch_context(user, now=NOW).recent_clicks == expected

    # What a user was shown shortly before the cutoff counts as seen; what came after does not.
    before = [e for e in world.events if CUTOFF - timedelta(hours=1) <= e.ts < CUTOFF]
    after = [e for e in world.events if e.ts >= CUTOFF and e.kind == "click"]
    assert before and after
    catalog = ServingState.load(settings).catalog
    for e in before[:20]:
        seen = online.fetch_context(e.user_id, NOW, catalog).seen_rows
        assert catalog.row_of[e.article_id] in seen
    assert online.fetch_context(after[0].user_id, now=NOW + 86_400).recent_clicks == \
        expected_recent_clicks(world, after[0].user_id, settings.recent_clicks_cap)

    live = sorted((a for a in known_articles(world) if a.expires_at is None or a.expires_at > CUTOFF),
                  key=lambda a: a.published_at, reverse=True)
    snapshot = LiveState(online, catalog, [24.0]).refresh(NOW)
    assert [catalog.ids[r] for r in snapshot.fresh_rows[:25]] == [a.id for a in live[:25]]
    assert snapshot.fresh_times[:25].tolist() == [to_unix(a.published_at) for a in live[:25]]

    # The hot window was rebuilt from SQL with the events' own times.
    clicks, _ = window_by_id(online, catalog)
    clicks_23h = Counter(e.article_id for e in world.events
                         if e.kind == "click" and CUTOFF - timedelta(hours=23) <= e.ts < CUTOFF)
    assert clicks and all(clicks.get(a, 0) >= n for a, n in clicks_23h.items())


def window_by_id(online, catalog, hours: float = 24.0) -> tuple[dict, dict]:
    """Clicks and impressions per article over the window ending at NOW, as a fresh serving
    process would read them from Redis."""
    window = LiveState(online, catalog, [hours]).refresh(NOW).window(hours)
    by_id = lambda column: {catalog.ids[r]: float(column[r]) for r in np.flatnonzero(column)}  # noqa: E731
    return by_id(window.clicks), by_id(window.impressions)


def test_rerunning_publishes_a_new_version_without_doubling_counters(settings, db, online, redis_client):
    first = run_nightly(settings, db, online, cutoff=CUTOFF)
    catalog = ServingState.load(settings).catalog
    clicks_before, impressions_before = window_by_id(online, catalog)
    assert clicks_before
    contexts_before = {u: online.fetch_context(u, now=NOW).recent_clicks for u in ("u1", "u2", "u3")}

    second = run_nightly(settings, db, online, cutoff=CUTOFF)
    store = BuildStore(settings.builds_dir)
    assert second.version != first.version and store.active_version() == second.version
    assert set(store.versions()) == {first.version, second.version}

    assert window_by_id(online, catalog) == (clicks_before, impressions_before)
    assert {u: online.fetch_context(u, now=NOW).recent_clicks for u in contexts_before} == contexts_before
    assert ServingState.load(settings).version == second.version


def test_a_failed_run_leaves_the_previous_build_serving(settings, db, online, world):
    good = run_nightly(settings, db, online, cutoff=CUTOFF)
    # Make training impossible for real: without tags tag2vec has no sentence to learn from.
    with db.begin() as conn:
        conn.execute(update(Article).values(tags=[]))

    with pytest.raises(ValueError, match="no training sentences"):
        run_nightly(settings, db, online, cutoff=CUTOFF)

    store = BuildStore(settings.builds_dir)
    assert store.active_version() == good.version and store.versions() == [good.version]
    failed_run = [r for r in job_rows(db) if r.run_id != good.run_id]
    assert [(r.step, r.status) for r in failed_run] == [("load", "ok"), ("train:tag2vec", "failed")]
    assert "NothingToLearn" in failed_run[-1].error and "no training sentences" in failed_run[-1].error
    assert failed_run[-1].finished_at is not None

    state = ServingState.load(settings)
    assert state.version == good.version
    assert len(state.indexes["tag2vec"]) == state.manifest["routes"]["tag2vec"]["count"] > 0
    user = next(e.user_id for e in reversed(world.events) if e.kind == "click" and e.ts < CUTOFF)
    result = RecallService(online, state).recall(user, 50, routes=["tag2vec"], now=NOW)
    assert result.candidates and result.version == good.version


def test_the_nightly_job_runs_on_postgresql(settings, pg_engine, online):
    world = generate(articles=120, users=20, days=DAYS, seed=4, start=START)
    ingest_synthetic(pg_engine, world, Console(quiet=True))
    result = run_nightly(settings, pg_engine, online, cutoff=CUTOFF)
    rows = job_rows(pg_engine, result.run_id)
    assert [r.step for r in rows] == expected_steps(settings)
    assert {r.step for r in rows if r.status != "ok"} <= skippable(settings)
    state = ServingState.load(settings)
    assert state.version == result.version == BuildStore(settings.builds_dir).active_version()
    assert len(state.catalog) == len([a for a in world.articles if a.published_at < CUTOFF])
    user = next(e.user_id for e in reversed(world.events) if e.kind == "click" and e.ts < CUTOFF)
    assert online.fetch_context(user, now=NOW).recent_clicks == expected_recent_clicks(world, user, 100)
