"""What keeps serving when a nightly run or its build goes wrong, in one process: the run lock,
a staged build that lost files (rejected, never published), a broken ACTIVE pointer at startup
(the newest build that loads serves) and on reload (the loaded build keeps serving), hot counters
recounted aside and swapped in whole, and the fast path's keyset catch-up after a big upsert.
Real SQLite and PostgreSQL, Redis, fastText and FAISS; nothing is mocked."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from datetime import datetime, timedelta, timezone
from functools import partial

import pytest
from rich.console import Console
from sqlalchemy import func, select

from api.reload import refresh
from jobs.ingest.synthetic import ingest_synthetic
from jobs.nightly import HOT, StagedHotCounters, nightly_lock, replay_events, run_nightly
from jobs.runs import RunLocked, utcnow
from recall import sqlstore
from recall.catalog import ItemCatalog
from recall.coclicks import CoClickCounter
from recall.db import make_sessionmaker
from recall.domain import ArticleRecord, to_unix
from recall.fastpath import catch_up
from recall.index import BuildStore
from recall.models import Article, JobRun
from recall.online import OnlineStore
from recall.service import RecallService
from recall.serving import ServingState
from recall.synthetic import generate


def recent_world():
    """A small world that ended two hours ago: its events are inside the replay horizon, its
    last hours inside the hot counters' (two hot windows)."""
    now = datetime.now(timezone.utc).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    return generate(articles=300, users=40, days=3, seed=13, start=now - timedelta(days=3, hours=2))


@pytest.fixture
def db(sqlite_engine):
    ingest_synthetic(sqlite_engine, recent_world(), Console(quiet=True))
    return sqlite_engine


def hot_state(online: OnlineStore, family: str = "hot") -> dict[str, list]:
    """Every counter of a recounted family: hot counters, or item CF's co-click lists ("icf")."""
    return {key.decode(): sorted(online.r.zrange(key, 0, -1, withscores=True))
            for key in online.r.scan_iter(match=f"{online.p}{family}:*", count=1000)
            if online.r.type(key) == b"zset"}


def copy_build(store: BuildStore, version: str, name: str) -> str:
    """A copy of a published build under another folder name, its manifest naming it."""
    shutil.copytree(store.root / version, store.root / name)
    manifest = json.loads((store.root / name / "manifest.json").read_text())
    manifest["version"] = name.removeprefix(BuildStore.STAGING).removeprefix(BuildStore.REJECTED)
    (store.root / name / "manifest.json").write_text(json.dumps(manifest))
    return name


def point_active(store: BuildStore, version: str) -> None:
    (store.root / "ACTIVE").write_text(version)


def clicked_user(db) -> str:
    with make_sessionmaker(db)() as session:
        return next(e.user_id for e in sqlstore.iter_events(session) if e.kind == "click")


# ---- the lock -------------------------------------------------------------------------------------

def test_the_lock_admits_one_run_at_a_time(settings, engine, online):
    first = nightly_lock(settings, engine, "run-a").acquire()
    try:
        assert first.still_held()
        holder = nightly_lock(settings, engine).holder()
        assert holder.pid == os.getpid() and holder.since is not None
        with pytest.raises(RunLocked, match="another nightly run holds the lock since") as refused:
            nightly_lock(settings, engine, "run-b").acquire()
        assert f"pid {os.getpid()}" in str(refused.value)
        # A whole run refuses before it touches anything: no job_runs row, no staging folder.
        with pytest.raises(RunLocked):
            run_nightly(settings, engine, online)
        with make_sessionmaker(engine)() as session:
            assert session.scalar(select(func.count()).select_from(JobRun)) == 0
        assert not settings.builds_dir.exists() or not any(settings.builds_dir.iterdir())
    finally:
        first.release()
    assert not first.still_held() and nightly_lock(settings, engine).holder() is None
    with nightly_lock(settings, engine, "run-b") as second:
        assert second.still_held()


# ---- a staged build is verified before it is published ----------------------------------------

def test_a_staged_build_that_lost_files_is_rejected_and_never_published(settings, db, online):
    good = run_nightly(settings, db, online)
    store = BuildStore(settings.builds_dir)
    sessions = make_sessionmaker(db)
    lost: list[str] = []

    def lose_the_encoder() -> None:
        """What an overlapping run's cleanup did: the model folder of a build being staged vanishes."""
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with sessions() as session:
                run_id = session.scalar(select(JobRun.run_id).where(
                    JobRun.run_id != good.run_id, JobRun.step == "train:tag2vec", JobRun.status == "ok"))
            if run_id:
                shutil.rmtree(settings.builds_dir / f".tmp-{run_id}" / "models" / "tag2vec")
                lost.append(run_id)
                return
            time.sleep(0.02)

    thief = threading.Thread(target=lose_the_encoder, daemon=True)
    thief.start()
    with pytest.raises(BuildStore.Invalid, match="models/tag2vec missing"):
        run_nightly(settings, db, online)
    thief.join(timeout=60)
    (rejected,) = lost

    assert store.active_version() == good.version and store.versions() == [good.version]
    assert "models/tag2vec missing" in (store.root / f".rejected-{rejected}" / "REJECTED.txt").read_text()
    assert not list(store.root.glob(".tmp-*"))
    with sessions() as session:
        publish = session.scalars(select(JobRun).where(JobRun.run_id == rejected, JobRun.step == "publish")).one()
    assert publish.status == "failed" and publish.metrics["rejected"] == f".rejected-{rejected}"
    state = ServingState.load(settings)
    assert state.version == good.version and state.load_error is None


# ---- startup and reload with a broken ACTIVE ------------------------------------------------------

def test_startup_serves_the_newest_build_that_loads(settings, db, online, caplog):
    good = run_nightly(settings, db, online)
    store = BuildStore(settings.builds_dir)
    older = copy_build(store, good.version, f"{good.version[:8]}T000000000000-aaaa")  # an older valid build
    assert store.versions() == [older, good.version]

    # ACTIVE names a build that is not there.
    point_active(store, "20991231T000000000000-gone")
    state = ServingState.load(settings)
    assert (state.version, state.requested) == (good.version, "20991231T000000000000-gone")
    assert "does not exist" in state.load_error and len(state.indexes["tag2vec"]) > 0
    with pytest.raises(BuildStore.Invalid, match="does not exist"):
        ServingState.load(settings, fallback=False)

    # ACTIVE names a corrupt build: each kind of damage, and newer staged or rejected complete
    # copies beside it, which are never a fallback.
    copy_build(store, good.version, f".tmp-{good.version}-x")
    copy_build(store, good.version, f".rejected-{good.version}-y")

    def model_missing(d):
        shutil.rmtree(d / "models" / "tag2vec")

    def catalog_garbage(d):  # right line count, so only loading it finds the fault
        lines = (d / "catalog.jsonl").read_text().splitlines()
        (d / "catalog.jsonl").write_text("".join("{not json\n" for _ in lines))

    def model_corrupt(d):  # the folder is there; the model in it does not load
        for path in (d / "models" / "tag2vec").rglob("*"):
            if path.is_file():
                path.write_bytes(b"garbage")

    def vectors_truncated(d):
        path = d / "indexes" / "tag2vec" / "vectors.npy"
        path.write_bytes(path.read_bytes()[:1000])

    for n, damage in enumerate((model_missing, catalog_garbage, model_corrupt, vectors_truncated)):
        broken = copy_build(store, good.version, f"{good.version}-z{n}")
        damage(store.root / broken)
        point_active(store, broken)
        state = ServingState.load(settings)
        assert (state.version, state.requested) == (good.version, broken), damage.__name__
        assert state.load_error and broken in state.load_error
        with pytest.raises(BuildStore.Invalid):
            ServingState.load(settings, fallback=False)
        shutil.rmtree(store.root / broken)

    # The active build itself is damaged: the older one serves.
    shutil.rmtree(store.root / good.version / "models" / "tag2vec")
    point_active(store, good.version)
    state = ServingState.load(settings)
    assert (state.version, state.requested) == (older, good.version)
    # Nothing loads: an empty state (fallback routes), not a crash.
    shutil.rmtree(store.root / older / "indexes")
    (store.root / older / "catalog.jsonl").unlink()
    state = ServingState.load(settings)
    assert state.version is None and state.requested == good.version and state.load_error
    assert "cannot be served" in caplog.text


def test_a_failed_reload_keeps_serving_the_loaded_build(settings, db, online):
    good = run_nightly(settings, db, online)
    store = BuildStore(settings.builds_dir)
    sessions = make_sessionmaker(db)
    service = RecallService(online, ServingState.load(settings))
    user, now = clicked_user(db), to_unix(utcnow())
    assert service.recall(user, 20, routes=["tag2vec"], now=now).candidates

    point_active(store, "20991231T000000000000-gone")
    refresh(service, sessions)
    state = service.state
    assert (state.version, state.requested) == (good.version, "20991231T000000000000-gone")
    assert "does not exist" in state.load_error
    result = service.recall(user, 20, routes=["tag2vec"], now=now)
    assert result.candidates and result.version == good.version
    refresh(service, sessions)  # the same ACTIVE is not tried again every tick
    assert service.state is state

    corrupt = copy_build(store, good.version, f"{good.version}-corrupt")
    shutil.rmtree(store.root / corrupt / "models" / "tag2vec")
    point_active(store, corrupt)
    refresh(service, sessions)
    assert (service.state.version, service.state.requested) == (good.version, corrupt)
    assert "models/tag2vec missing" in service.state.load_error

    fixed = copy_build(store, good.version, f"{good.version}-fixed")
    point_active(store, fixed)
    refresh(service, sessions)
    assert (service.state.version, service.state.requested, service.state.load_error) == (fixed, fixed, None)
    assert service.recall(user, 20, routes=["tag2vec"], now=now).version == fixed


# ---- hot counters ---------------------------------------------------------------------------------

def test_hot_counters_are_recounted_aside_and_swapped_in_whole(settings, db, online):
    run_nightly(settings, db, online)
    before, co_clicks = hot_state(online), hot_state(online, "icf")
    assert sum(len(v) for v in before.values()) > 50
    assert sum(len(v) for v in co_clicks.values()) > 50

    # A run killed after recounting, before its swap: the live counters are untouched.
    cutoff = utcnow()
    window = online.bucket(to_unix(cutoff) - 2 * settings.hot_window_hours * 3600)  # the recount's first bucket
    hot_since = datetime.fromtimestamp(window * settings.hot_bucket_seconds, timezone.utc).replace(tzinfo=None)
    in_window = [key for key in before if int(key.rsplit(":", 1)[1]) >= window]
    dead, sessions = StagedHotCounters(online, "dead-run"), make_sessionmaker(db)
    assert replay_events(sessions, hot_since, cutoff, [partial(dead.record_events, effects=HOT)]) > 0
    recount = CoClickCounter(dead)
    assert replay_events(sessions, cutoff - timedelta(days=7), cutoff, [recount.add], kind="click") > 0
    recount.write()
    assert hot_state(online) == before and hot_state(online, "icf") == co_clicks
    assert len(list(online.r.scan_iter(match=f"{online.p}nightly:dead-run:hot:*"))) == len(in_window)
    assert len(list(online.r.scan_iter(match=f"{online.p}nightly:dead-run:icf:*"))) == len(co_clicks) + 1  # + ref
    staged = list(online.r.scan_iter(match=f"{online.p}nightly:dead-run:*"))
    # A live counter or co-click list SQL knows nothing of (inside the recounted window) goes with the swap.
    ghost = online.k("hot", "c", online.bucket(to_unix(cutoff)) - 3)
    online.r.zincrby(ghost, 5, "ghost")
    online.r.zincrby(online.k("icf", "ghost"), 5, "other")

    after = run_nightly(settings, db, online)
    assert hot_state(online) == before  # recounted, not added to
    assert hot_state(online, "icf") == co_clicks
    assert not list(online.r.scan_iter(match=f"{online.p}nightly:*"))
    with make_sessionmaker(db)() as session:
        load = session.scalars(select(JobRun).where(JobRun.run_id == after.run_id, JobRun.step == "load")).one()
        online_step = session.scalars(select(JobRun).where(JobRun.run_id == after.run_id,
                                                           JobRun.step == "online")).one()
    assert load.metrics["swept_hot_keys"] == len(staged)
    # Redis was whole: the second run took the history since the first one's cutoff alone.
    assert online_step.metrics["replay"].startswith("since ")
    assert online_step.metrics["hot_counters"] == len(in_window) > 0


# ---- the fast path's catch-up ---------------------------------------------------------------------

def test_catch_up_publishes_every_article_of_one_big_upsert(settings, engine, online):
    """One upsert of 1,200 articles stamps them all with one updated_at; pages of 500 must still
    reach all of them (a time-only watermark stopped after the first page)."""
    sessions = make_sessionmaker(engine)
    state = ServingState.in_memory(settings, ItemCatalog(), {})
    state.live_until = datetime(2026, 1, 1)
    service = RecallService(online, state)
    published = datetime(2026, 6, 1)
    records = [ArticleRecord(id=f"a{n:05d}", title=f"story {n}", category="news", tags=(("news", 1.0),),
                             published_at=published) for n in range(1200)]
    with sessions() as session:
        sqlstore.upsert_articles(session, records)
        session.commit()
        assert session.scalar(select(func.count(func.distinct(Article.updated_at)))) == 1

    pages = []
    while added := catch_up(service.pipeline, online, sessions):
        pages.append(added)
    assert pages == [500, 500, 200]
    assert all(r.id in service.state.catalog for r in records)
    assert service.state.live_until_id == "a01199"

    # A later change is caught once, after the cursor.
    edited = [ArticleRecord(id=r.id, title=r.title + " (updated)", category="news", tags=r.tags,
                            published_at=published) for r in records[:3]]
    with sessions() as session:
        sqlstore.upsert_articles(session, edited)
        session.commit()
    assert catch_up(service.pipeline, online, sessions) == 3
    assert catch_up(service.pipeline, online, sessions) == 0
