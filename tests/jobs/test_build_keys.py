"""Builds and their Redis keys in step: each build version reads and writes its own user vectors,
memberships and cluster lists (``recall/buildkeys.py``), so publishing is one flip of ACTIVE.

Two builds of one world differ in a way no read can hide: the first embeds tags in 16
dimensions, the second in 24, so a user vector read with the other build's indexes shows by its
length. Real SQLite, Redis, fastText, torch and FAISS; the nightly runs in this process while a
reader thread serves and reloads as the API's watcher does."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import numpy as np
import pytest
from rich.console import Console
from sqlalchemy import select

import jobs.nightly
from api.reload import refresh
from jobs.ingest.synthetic import ingest_synthetic
from jobs.nightly import run_nightly
from jobs.runs import utcnow
from recall import buildkeys, sqlstore
from recall.clusterstore import ClusterStore
from recall.db import make_sessionmaker
from recall.domain import EventRecord
from recall.index import BuildStore
from recall.models import JobRun
from recall.online import OnlineStore
from recall.rebuild import rebuild_build_keys, rebuild_if_empty
from recall.service import RecallService
from recall.serving import ServingState
from tests.jobs.test_nightly_recovery import copy_build, point_active, recent_world

DIM_1, DIM_2 = 16, 24  # tag2vec dimensions of the first and the second build
READ_ROUTES = ("user2vec", "cluster_cf")  # a user vector, memberships and the clusters' lists


@pytest.fixture
def world():
    return recent_world()


@pytest.fixture
def db(sqlite_engine, world):
    ingest_synthetic(sqlite_engine, world, Console(quiet=True))
    return sqlite_engine


def dim(settings, n: int):
    return settings.model_copy(update={"tag2vec_dim": n})


def vector(online: OnlineStore, version: str, user: str, kind: str = "tag") -> np.ndarray | None:
    raw = online.r.get(online.build_key(version, "u", user, "vec", kind))
    return None if raw is None else np.frombuffer(raw, np.float32)


def dump(online: OnlineStore, version: str) -> dict[bytes, bytes]:
    """Every key of a version with its serialised value."""
    return {key: online.r.dump(key) for key in online.r.scan_iter(match=online.build_key(version, "*"), count=1000)}


def readers(world) -> list[str]:
    """Users with clicks: each has a tag vector and clusters in every build."""
    return sorted({e.user_id for e in world.events if e.kind == "click"})[:5]


def never_clicked(world) -> list[str]:
    clicked = {e.article_id for e in world.events if e.kind == "click"}
    return [a.id for a in world.articles if a.id not in clicked and a.status == "active"]


def click(user: str, article: str) -> EventRecord:
    ts = utcnow()
    return EventRecord(key=f"{user}:{article}:{ts.isoformat()}", user_id=user, article_id=article, kind="click",
                       ts=ts, source="api")


def post(service: RecallService, sessions, event: EventRecord) -> None:
    """As ``POST /v1/events`` does: SQL first, then the online state of the process that got it."""
    with sessions() as session:
        sqlstore.insert_events(session, [event])
        session.commit()
    service.record_events([event])


def cf_items(online: OnlineStore, version: str, user: str) -> set[str]:
    """What the user's clusters in ``version`` list in their CF lists."""
    store = ClusterStore(online, version)
    return {item for scheme, labels in store.memberships(user).items() for label in labels
            for item, _ in store.top_items(scheme, label, 1000)}


def read(service: RecallService, user: str):
    """A request's context, with the dimension its build's tag2vec index expects."""
    p = service.pipeline
    ctx = service.context(p, user, {name: p.routes[name] for name in READ_ROUTES}, now=time.time())
    return p.state.version, ctx, p.state.indexes["tag2vec"].dim


def test_a_build_is_published_by_one_flip_and_no_read_mixes_two_builds(settings, db, online, world, monkeypatch):
    sessions = make_sessionmaker(db)
    first = run_nightly(dim(settings, DIM_1), db, online).version
    old = RecallService(online, ServingState.load(settings))  # a worker that never reloads
    watched = RecallService(online, ServingState.load(settings))  # one that reloads as the API does
    users = readers(world)
    clicker, articles = users[0], never_clicked(world)
    assert all(vector(online, first, u).shape == (DIM_1,) for u in users)
    snapshot: dict[bytes, bytes] = {}
    at_flip: dict[str, object] = {}

    def verify_then_click(*args):
        """While the second build is made, after its cutoff: a click the old build serves."""
        post(old, sessions, click(clicker, articles[0]))
        snapshot.update(dump(online, first))
        return real_verify(*args)

    def publish_and_look(store: BuildStore, staging):
        """The moment before ACTIVE flips: the new keys are complete, the old ones untouched."""
        second = staging.name.removeprefix(BuildStore.STAGING)
        at_flip.update(active=store.active_version(), complete=buildkeys.is_complete(online, second),
                       registered=set(buildkeys.registered(online)), unchanged=dump(online, first) == snapshot,
                       new_dims={vector(online, second, u).shape for u in users},
                       new_cf=cf_items(online, second, clicker), old_read=read(old, clicker))
        return real_publish(store, staging)

    real_verify, real_publish = jobs.nightly.verify_staged, BuildStore.publish
    monkeypatch.setattr(jobs.nightly, "verify_staged", verify_then_click)
    monkeypatch.setattr(BuildStore, "publish", publish_and_look)

    reads, stop, failures = [], threading.Event(), []

    def serve() -> None:
        try:
            while not stop.is_set():
                refresh(watched, sessions)
                for user in users:
                    version, ctx, expected = read(watched, user)
                    reads.append((version, ctx.user_vectors["tag"].shape[0], expected, ctx.degraded, bool(ctx.clusters)))
                time.sleep(0.02)
        except Exception as exc:  # noqa: BLE001 - reported by the test below
            failures.append(exc)

    reader = threading.Thread(target=serve, daemon=True)
    reader.start()
    try:
        second = run_nightly(dim(settings, DIM_2), db, online).version
        time.sleep(0.3)
        refresh(watched, sessions)  # the watcher's next tick, at the latest
        time.sleep(0.2)
    finally:
        stop.set()
        reader.join(timeout=60)
    assert not failures, failures

    # Before the flip: ACTIVE still named the first build, the second's keys were all written and
    # complete, the first build's keys were exactly as before, and the old worker read them.
    assert at_flip["active"] == first and at_flip["complete"] and at_flip["registered"] == {first, second}
    assert at_flip["unchanged"] and at_flip["new_dims"] == {(DIM_2,)}
    version, ctx, expected = at_flip["old_read"]
    assert (version, ctx.user_vectors["tag"].shape[0], expected, ctx.degraded) == (first, DIM_1, DIM_1, False)
    # The click made while the build was made reached the new build's CF lists (its catch-up).
    assert articles[0] in at_flip["new_cf"]

    # No read, before, during or after the flip, met a vector of the other build's space.
    assert {v for v, *_ in reads} == {first, second}
    assert all(got == expected for _, got, expected, _, _ in reads)
    assert not any(degraded for *_, degraded, _ in reads) and all(has for *_, has in reads)
    assert {(v, got) for v, got, *_ in reads} == {(first, DIM_1), (second, DIM_2)}
    assert watched.state.version == second and read(watched, clicker)[1].clusters == \
        ClusterStore(online, second).memberships(clicker)

    # After the flip, both builds are served a while: a click on either reaches the CF lists of
    # both, and moves the vector of the build that served it only.
    b2_vector = vector(online, second, clicker)
    post(old, sessions, click(clicker, articles[1]))
    assert articles[1] in cf_items(online, first, clicker) and articles[1] in cf_items(online, second, clicker)
    assert np.array_equal(vector(online, second, clicker), b2_vector)
    b1_vector = vector(online, first, clicker)
    post(watched, sessions, click(clicker, articles[2]))
    assert articles[2] in cf_items(online, first, clicker) and articles[2] in cf_items(online, second, clicker)
    assert np.array_equal(vector(online, first, clicker), b1_vector)
    assert vector(online, second, clicker).shape == (DIM_2,) and vector(online, first, clicker).shape == (DIM_1,)


def test_pruning_fallback_and_rebuild_keep_each_builds_keys(settings, db, online, world):
    sessions = make_sessionmaker(db)
    store = BuildStore(settings.builds_dir)
    first = run_nightly(dim(settings, DIM_1), db, online).version
    users = readers(world)
    # Two older builds on disk with keys of their own (rebuilt from SQL as a worker would), and
    # the keys of a run killed before it published.
    oldest = copy_build(store, first, f"{first[:8]}T000000000000-0000")
    older = copy_build(store, first, f"{first[:8]}T000000000000-aaaa")
    now = utcnow() + timedelta(milliseconds=1)
    pruned_worker = RecallService(online, ServingState.load(settings, store.root / oldest))
    for version in (oldest, older):
        rebuild_build_keys(online, ServingState.load(settings, store.root / version), sessions, now)
    dead = "20200101T000000000000-dead"
    buildkeys.register(online, dead, 0.0)
    online.set_user_vectors(dead, "tag", [(users[0], np.ones(DIM_1, np.float32))])
    assert set(buildkeys.registered(online)) == {oldest, older, first, dead}
    kept_before = dump(online, first)

    second = run_nightly(dim(settings, DIM_2), db, online).version

    # Keep 3: the oldest folder was pruned and its keys with it; the dead run's keys are swept;
    # every build still on disk keeps its keys, the first one's unchanged.
    assert store.versions() == [older, first, second]
    assert set(buildkeys.registered(online)) == {older, first, second}
    assert dump(online, oldest) == {} and dump(online, dead) == {}
    assert dump(online, first) == kept_before and len(dump(online, older)) > len(users)
    assert rebuild_if_empty(pruned_worker, sessions) is False and dump(online, oldest) == {}  # dropped on purpose
    with sessions() as session:
        steps = {r.step: r.metrics for r in session.scalars(select(JobRun).where(JobRun.run_id == second))}
    assert steps["load"]["swept_build_keys"] == [dead] and steps["online"]["dropped_build_keys"] == [oldest]
    assert steps["publish"]["verified"] and steps["publish"]["user_vectors:tag"] > len(users)

    # A broken ACTIVE: a starting worker falls back to the first build and reads its keys.
    (store.root / second / "catalog.jsonl").unlink()
    point_active(store, second)
    fallback = RecallService(online, ServingState.load(settings))
    assert fallback.state.version == first and fallback.state.requested == second
    for user in users:
        version, ctx, expected = read(fallback, user)
        assert (version, ctx.user_vectors["tag"].shape[0], expected, ctx.degraded) == (first, DIM_1, DIM_1, False)
        assert ctx.clusters == ClusterStore(online, first).memberships(user) != {}
    assert fallback.recall(users[0], 20, routes=["cluster_cf", "user2vec"]).candidates

    # Redis restarted empty: the rebuild restores the served build's keys.
    online.flush_namespace()
    assert read(fallback, users[0])[1].degraded
    assert rebuild_if_empty(fallback, sessions) is True
    assert buildkeys.registered(online) == {first: fallback.state.cutoff_ts}
    for user in users:
        version, ctx, expected = read(fallback, user)
        assert (ctx.user_vectors["tag"].shape[0], ctx.degraded) == (DIM_1, False) and ctx.clusters
    # Redis whole, the served build's keys gone: they alone are rebuilt.
    clicks_before = online.fetch_context(users[0]).recent_clicks
    buildkeys.drop(online, first)
    assert read(fallback, users[0])[1].degraded and online.is_whole() and not online.is_whole(first)
    assert rebuild_if_empty(fallback, sessions) is True and online.is_whole(first)
    assert vector(online, first, users[0]).shape == (DIM_1,)
    assert online.fetch_context(users[0]).recent_clicks == clicks_before
