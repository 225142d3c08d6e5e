"""The nightly job's faults, reproduced with real processes: ``recall nightly`` runs as a
subprocess (the CLI, as cron starts it) against real SQLite or PostgreSQL, Redis db 15 under the
test's key prefix and a var dir of the test's own.

* Two runs at once: exactly one refuses, with a clear message and a non-zero exit, and the other
  publishes a complete build that verifies.
* A run killed (SIGKILL) mid-way: the previous build keeps serving, and the next run succeeds and
  marks the killed run's rows failed.
* A run killed in its online step (PostgreSQL, where the test can hold the run at the very
  point): the live hot counters are the old ones, never cleared and half replayed.

Every subprocess is bounded by a timeout and killed at the end of its test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import Engine, select, text

from jobs.ingest.synthetic import ingest_synthetic
from jobs.nightly import nightly_lock, run_nightly
from recall import buildkeys
from recall.db import make_sessionmaker
from recall.index import BuildStore
from recall.models import JobRun
from recall.online import OnlineStore
from recall.serving import ServingState
from recall.settings import Settings
from recall.synthetic import generate
from tests.conftest import REDIS_URL

RUN_TIMEOUT = 420  # seconds a whole `recall nightly` may take on two busy cores (pytest-timeout: 600 a test)
LOCKED_EXIT = 75


def recent_world(articles: int = 300, users: int = 40, days: int = 3):
    """A world that ended a day ago: every event is inside the nightly's replay horizon (7 days)
    and before any cutoff the CLI takes (now), so two runs see the same data."""
    now = datetime.now(timezone.utc).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    return generate(articles=articles, users=users, days=days, seed=13, start=now - timedelta(days=days + 1))


def cli_env(settings: Settings, engine: Engine) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECALL_")}
    env.update(RECALL_VAR_DIR=str(settings.var_dir),
               RECALL_DATABASE_URL=engine.url.render_as_string(hide_password=False),
               RECALL_REDIS_URL=REDIS_URL, RECALL_REDIS_PREFIX=settings.redis_prefix,
               RECALL_BUILD_ENCODERS="tag2vec", RECALL_TAG2VEC_EPOCHS=str(settings.tag2vec_epochs),
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    return env


@pytest.fixture
def spawn(tmp_path):
    """Start `recall nightly` processes (output to files); any still alive at the end is killed."""
    procs: list[subprocess.Popen] = []

    def start(env: dict[str, str], name: str) -> subprocess.Popen:
        out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        with out.open("wb") as o, err.open("wb") as e:
            proc = subprocess.Popen([sys.executable, "-c", "from jobs.cli import app; app()", "nightly"],
                                    env=env, cwd=tmp_path, stdout=o, stderr=e)
        proc.out_path, proc.err_path = out, err
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            proc.kill()
            proc.wait(timeout=60)


def output(proc: subprocess.Popen) -> str:
    return f"--- stdout\n{proc.out_path.read_text()[-3000:]}\n--- stderr\n{proc.err_path.read_text()[-5000:]}"


def wait_until(predicate: Callable[[], object], timeout: float, what: str, procs=()) -> object:
    """Poll ``predicate`` until it returns something true; fail when time is up or when every
    process in ``procs`` has exited without it happening."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if procs and all(p.poll() is not None for p in procs):
            value = predicate()
            if value:
                return value
            pytest.fail(f"every process exited before {what}:\n" + "\n".join(output(p) for p in procs))
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}:\n" + "\n".join(output(p) for p in procs))


def nightly_rows(engine: Engine) -> list[JobRun]:
    with make_sessionmaker(engine)() as session:
        return list(session.scalars(select(JobRun).where(JobRun.job == "nightly").order_by(JobRun.id)))


def runs(engine: Engine) -> dict[str, list[JobRun]]:
    out: dict[str, list[JobRun]] = {}
    for row in nightly_rows(engine):
        out.setdefault(row.run_id, []).append(row)
    return out


def hot_state(online: OnlineStore) -> dict[str, list]:
    """Every live hot counter under the test's prefix, with its contents."""
    return {key.decode(): sorted(online.r.zrange(key, 0, -1, withscores=True))
            for key in online.r.scan_iter(match=f"{online.p}hot:*", count=1000)}


def kill_inside_a_step(proc: subprocess.Popen, engine: Engine, run_id: str) -> None:
    """SIGKILL ``proc`` while one of its steps is ``running`` (not between two steps): freeze it,
    let what it already sent reach the database, look, and kill it or let it go on a little."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        proc.send_signal(signal.SIGSTOP)
        time.sleep(0.2)
        if "running" in {r.status for r in runs(engine)[run_id]}:
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=60) == -signal.SIGKILL
            return
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.01)
    pytest.fail("never caught the run inside a step:\n" + output(proc))


def assert_complete_build(settings: Settings, version: str) -> None:
    store = BuildStore(settings.builds_dir)
    assert store.active_version() == version
    assert store.verify(store.root / version) == []
    assert (store.root / version / "models" / "tag2vec").is_dir()
    state = ServingState.load(settings)
    assert state.version == state.requested == version and state.load_error is None
    assert len(state.indexes["tag2vec"]) == state.manifest["routes"]["tag2vec"]["count"] > 0
    assert not list(settings.builds_dir.glob(".tmp-*"))


def test_two_runs_at_once_one_refuses_the_other_publishes_a_complete_build(settings, engine, online, spawn):
    ingest_synthetic(engine, recent_world(), Console(quiet=True))
    env = cli_env(settings, engine)
    first, second = spawn(env, "first"), spawn(env, "second")

    # Whichever takes the lock is frozen while holding it, so the other one certainly meets it
    # (a fast winner could otherwise finish before the loser has even started).
    holder = wait_until(lambda: nightly_lock(settings, engine).holder(), 300, "a run to take the lock",
                        (first, second))
    assert holder.pid in (first.pid, second.pid) and holder.since is not None
    winner, loser = (first, second) if holder.pid == first.pid else (second, first)
    os.kill(winner.pid, signal.SIGSTOP)
    try:
        code = loser.wait(timeout=300)
    finally:
        os.kill(winner.pid, signal.SIGCONT)
    assert code == LOCKED_EXIT, output(loser)
    message = loser.err_path.read_text()
    assert "another nightly run holds the lock since" in message, output(loser)
    assert f"pid {winner.pid}" in message and "Traceback" not in message
    assert winner.wait(timeout=RUN_TIMEOUT) == 0, output(winner)

    # The loser wrote nothing: one run in job_runs, every step finished.
    by_run = runs(engine)
    assert len(by_run) == 1, list(by_run)
    (version, rows), = by_run.items()
    assert rows[-1].step == "online" and {r.status for r in rows} <= {"ok", "skipped"}
    assert_complete_build(settings, version)
    # The lock is free again: a run can take it.
    assert nightly_lock(settings, engine).holder() is None
    with nightly_lock(settings, engine):
        pass


def test_a_run_killed_mid_way_leaves_the_previous_build_serving(settings, engine, online, spawn):
    ingest_synthetic(engine, recent_world(), Console(quiet=True))
    good = run_nightly(settings, engine, online)
    store = BuildStore(settings.builds_dir)

    proc = spawn(cli_env(settings, engine), "killed")

    def training() -> str | None:  # the staging directory exists from the first train step on
        return next((r.run_id for r in nightly_rows(engine)
                     if r.run_id != good.run_id and r.step.startswith("train:")), None)

    killed = wait_until(training, 300, "the second run to start training", (proc,))
    kill_inside_a_step(proc, engine, killed)

    # The previous build keeps serving; the killed run left a trace and its staging directory.
    assert store.active_version() == good.version and store.versions() == [good.version]
    state = ServingState.load(settings)
    assert state.version == state.requested == good.version and state.load_error is None
    assert (settings.builds_dir / f".tmp-{killed}").is_dir()
    assert "running" in {r.status for r in runs(engine)[killed]}
    assert nightly_lock(settings, engine).holder() is None  # the lock died with its holder

    after = run_nightly(settings, engine, online)
    assert_complete_build(settings, after.version)
    killed_rows = runs(engine)[killed]
    assert "running" not in {r.status for r in killed_rows}
    abandoned = [r for r in killed_rows if r.status == "failed"]
    assert abandoned and all(r.error.startswith("abandoned") and r.finished_at for r in abandoned)
    load = next(r for r in runs(engine)[after.run_id] if r.step == "load")
    assert load.metrics["abandoned_runs"] == [killed] and f".tmp-{killed}" in load.metrics["swept"]
    assert sorted(store.versions()) == sorted([good.version, after.version])


def test_a_run_killed_in_its_online_step_leaves_the_hot_counters_whole(settings, pg_engine, online, spawn):
    """PostgreSQL lets the test stop the run at the worst moment for the old code: in the online
    step's replay of the hot counters, after publishing. Table locks taken in turn walk it there:
    events (the run waits to write the new build's keys), then job_runs while events is let go
    (it writes the keys, publishes, and waits to record that), then events again while job_runs
    is let go (it starts the online step and waits on its first read of events). Killed there,
    it must leave the live counters as they were."""
    engine = pg_engine
    ingest_synthetic(engine, recent_world(), Console(quiet=True))
    good = run_nightly(settings, engine, online)
    before = hot_state(online)
    assert sum(len(v) for v in before.values()) > 50

    proc = spawn(cli_env(settings, engine), "online")
    loaded = lambda: next((r.run_id for r in nightly_rows(engine)  # noqa: E731
                           if r.run_id != good.run_id and r.step == "load" and r.status == "ok"), None)
    killed = wait_until(loaded, 300, "the second run to load its corpus", (proc,))
    with engine.connect() as events, engine.connect() as job_runs:
        def lock(conn, table: str) -> None:
            conn.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))

        def wait_for(table: str, what: str) -> None:
            waiting = lambda: events.execute(text(  # noqa: E731
                f"SELECT count(*) FROM pg_locks WHERE relation = '{table}'::regclass AND NOT granted")).scalar()
            wait_until(waiting, RUN_TIMEOUT, what, (proc,))

        lock(events, "events")
        wait_for("events", "the run to read events for its build's keys")
        lock(job_runs, "job_runs")
        events.rollback()
        wait_for("job_runs", "the run to publish and record it")
        assert BuildStore(settings.builds_dir).active_version() == killed
        lock(events, "events")
        job_runs.rollback()
        wait_for("events", "the run to read events in its online step")
        steps = {r.step: r.status for r in runs(engine)[killed]}
        assert steps.get("online") == "running", steps
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
        events.rollback()

    assert hot_state(online) == before  # neither cleared nor half replayed
    assert buildkeys.is_complete(online, killed)  # the build it published serves with its own keys
    assert not list(online.r.scan_iter(match=f"{online.p}nightly:*"))  # nothing was staged yet

    after = run_nightly(settings, engine, online)
    assert hot_state(online) == before  # recounted from the same events: the same counts
    assert "running" not in {r.status for r in runs(engine)[killed]}
    assert BuildStore(settings.builds_dir).active_version() == after.version
