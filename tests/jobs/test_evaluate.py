"""``recall eval``: the online replay on a small synthetic world (real SQLite, Redis, fastText)."""

from __future__ import annotations

from datetime import datetime, timedelta

from rich.console import Console
from sqlalchemy import select

from jobs.evaluate import FUSED, evaluate, record
from jobs.ingest.synthetic import ingest_synthetic
from recall.db import make_sessionmaker
from recall.models import JobRun
from recall.synthetic import generate

START, DAYS = datetime(2026, 11, 1), 3
SPLIT = START + timedelta(days=2)


def test_the_replay_reports_recall_per_route_and_records_it(settings, sqlite_engine, online):
    world = generate(articles=300, users=40, days=DAYS, seed=11, start=START)
    ingest_synthetic(sqlite_engine, world, Console(quiet=True))
    settings = settings.model_copy(update={"rule_min_size": 3})
    report = evaluate(settings, sqlite_engine, online, SPLIT, [10, 50])

    # Every impression after the split with a click is asked about once, each click counted once.
    after = [e for e in world.events if e.ts >= SPLIT]
    sessions = {e.impression_id for e in after if e.kind == "click"}
    assert report.impressions == len(sessions)
    assert report.clicks == len({(e.impression_id, e.article_id) for e in after if e.kind == "click"})
    figures = report.as_dict()["recall"]
    for system in [FUSED, "tag2vec", "user2vec", "cluster_cf", "hot", "baseline:hot6h", "baseline:popular"]:
        assert 0.0 <= figures[system]["10"] <= figures[system]["50"] <= 1.0, system
    # The served hot route and the real-time baseline are the same thing measured twice.
    assert figures["hot"] == figures["baseline:hot6h"]
    # On a world whose readers keep to their topics, personal routes beat popularity over training.
    assert figures[FUSED]["50"] > figures["baseline:popular"]["50"]
    assert figures["user2vec"]["50"] > figures["baseline:popular"]["50"]

    record(report, make_sessionmaker(sqlite_engine), "eval-test", "synthetic")
    with make_sessionmaker(sqlite_engine)() as session:
        row = session.scalars(select(JobRun).where(JobRun.run_id == "eval-test")).one()
    assert row.job == "eval" and row.step == "evaluate" and row.status == "ok"
    assert row.metrics["recall"][FUSED]["50"] == figures[FUSED]["50"]
    assert row.artefact_version == report.build["version"]
