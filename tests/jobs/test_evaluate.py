"""``recall eval``: the online replay on a small synthetic world (real SQLite, Redis, fastText)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
from rich.console import Console
from sqlalchemy import select

from jobs.evaluate import (
    APPLY,
    FUSED,
    PUBLISH,
    SCORE,
    DumpedImpression,
    Fusion,
    evaluate,
    fit_fusion,
    record,
    score_fusion,
    timeline,
)
from jobs.ingest.synthetic import ingest_synthetic
from recall import sqlstore
from recall.db import make_sessionmaker
from recall.domain import ArticleRecord, EventRecord
from recall.models import JobRun, RouteConfigAudit
from recall.routeconfig import load_route_configs, update_route_config
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
    assert report.total_clicks == len({(e.impression_id, e.article_id) for e in after if e.kind == "click"})
    figures = report.as_dict()["recall"]
    for system in [FUSED, "tag2vec", "user2vec", "cluster_cf", "hot", "baseline:hot6h", "baseline:popular"]:
        assert 0.0 <= figures[system]["10"] <= figures[system]["50"] <= 1.0, system
    # The served hot route asks for its quota (300) before the filters; the baseline, the same
    # ranking, asks for the largest K (50) before them: the served list holds at least as much.
    assert report.asked["hot"] == 300 and report.asked["baseline:hot6h"] == 50
    for k in ("10", "50"):
        assert figures["hot"][k] >= figures["baseline:hot6h"][k]
    # Each figure comes with a bootstrap interval around it.
    for system, intervals in report.as_dict()["interval95"].items():
        for k, (low, high) in intervals.items():
            assert low <= figures[system][k] <= high, (system, k)
    # On a world whose readers keep to their topics, personal routes beat popularity over training.
    assert figures[FUSED]["50"] > figures["baseline:popular"]["50"]
    assert figures["user2vec"]["50"] > figures["baseline:popular"]["50"]

    record(report, make_sessionmaker(sqlite_engine), "eval-test", "synthetic")
    with make_sessionmaker(sqlite_engine)() as session:
        row = session.scalars(select(JobRun).where(JobRun.run_id == "eval-test")).one()
    assert row.job == "eval" and row.step == "evaluate" and row.status == "ok"
    assert row.metrics["recall"][FUSED]["50"] == figures[FUSED]["50"]
    assert row.artefact_version == report.build["version"]


def test_an_article_first_shown_in_an_impression_is_scored_before_it_is_published():
    t = datetime(2026, 11, 3, 12, 0, 0)
    shown = [EventRecord(key=f"e{i}", user_id="u", article_id=a, kind=kind, ts=t + timedelta(seconds=delay),
                         impression_id="i1") for i, (a, kind, delay) in
             enumerate([("new", "impression", 0), ("new", "click", 1), ("old", "impression", 0)])]
    loose = EventRecord(key="x", user_id="v", article_id="new", kind="click", ts=t)
    article = ArticleRecord(id="new", published_at=t)
    steps = timeline([*shown, loose], {"new": article})
    kinds = [(kind, payload if kind == PUBLISH else [e.key for e in payload]) for _, kind, payload in steps]
    assert kinds[0] == (SCORE, ["e0", "e1", "e2"])
    assert kinds[1] == (PUBLISH, article)
    assert {tuple(p) for k, p in kinds[2:]} == {("e0", "e1", "e2"), ("x",)} and {k for k, _ in kinds[2:]} == {APPLY}


def test_the_replay_never_offers_an_article_in_the_impression_that_first_shows_it(settings, sqlite_engine, online):
    """Two articles clicked after the split: one published a minute before the impression, one
    first shown by it. Fresh may find the first; nothing may find the second there."""
    world = generate(articles=200, users=30, days=DAYS, seed=5, start=START)
    ingest_synthetic(sqlite_engine, world, Console(quiet=True))
    t = SPLIT + timedelta(hours=20)
    early = ArticleRecord(id="early", title="early news", published_at=t - timedelta(minutes=1))
    first_shown = ArticleRecord(id="first-shown", title="shown first here", published_at=t)
    events = [EventRecord(key=f"leak:{a}:{kind}", user_id="reader", article_id=a, kind=kind,
                          ts=t + timedelta(seconds=1 if kind == "click" else 0), impression_id="leak")
              for a in ("early", "first-shown") for kind in ("impression", "click")]
    with make_sessionmaker(sqlite_engine)() as session:
        sqlstore.upsert_articles(session, [early, first_shown])
        sqlstore.insert_events(session, events)
        session.commit()
    settings = settings.model_copy(update={"rule_min_size": 3, "build_encoders": "tag2vec"})
    report = evaluate(settings, sqlite_engine, online, SPLIT, [500])
    at = report.impression_ids.index("leak")
    assert report.clicks[at] == 2
    # Fresh (newest first) would put "first-shown" on top if it were live: it finds only "early".
    assert report.hits["fresh"][at][0] == 1
    assert all(hits[at][0] <= 1 for hits in report.hits.values())


def dumped(clicked_rank_a: int, n: int = 40) -> DumpedImpression:
    """Route "a" ranks the clicked row 1000 at ``clicked_rank_a``; route "b" lists other rows."""
    a = np.arange(2000, 2000 + n, dtype=np.int32)
    a[clicked_rank_a] = 1000
    b = np.arange(3000, 3000 + n, dtype=np.int32)
    keep = np.ones(n, bool)
    return DumpedImpression("i", 1, np.array([1000], np.int32), {"a": (a, keep), "b": (b, keep)})


def test_the_tuner_finds_the_route_that_finds_the_clicks():
    impressions = [dumped(rank) for rank in (0, 1, 3, 4)]
    start = Fusion({"a": (0.1, 50), "b": (4.0, 50)}, 0.25)
    # Route "b" outweighs "a": its rows fill the top 5, where "a"'s clicks are not.
    assert score_fusion(start, impressions, [5])[0] == 0.0
    fitted, trace = fit_fusion(start, impressions, [5])
    assert score_fusion(fitted, impressions, [5])[0] == 1.0
    assert trace[-1]["objective"] == 1.0 and trace[0]["objective"] == 0.0
    # A filtered candidate never counts, however it is weighted.
    hidden = replace(impressions[0], lists={"a": (impressions[0].lists["a"][0], np.zeros(40, bool))})
    assert score_fusion(Fusion({"a": (1.0, 50)}, 0.25), [hidden], [40])[0] == 0.0


def test_tuning_fits_on_the_validation_window_and_the_test_replay_serves_the_fit(settings, sqlite_engine, online):
    world = generate(articles=200, users=30, days=DAYS, seed=7, start=START)
    ingest_synthetic(sqlite_engine, world, Console(quiet=True))
    settings = settings.model_copy(update={"rule_min_size": 3, "build_encoders": "tag2vec"})
    with make_sessionmaker(sqlite_engine)() as session:
        update_route_config(session, "fresh", "test", weight=4.0, quota=300)  # a poor start to move from
    report = evaluate(settings, sqlite_engine, online, SPLIT, [10, 50], tune_from=START + timedelta(days=1),
                      configs_engine=sqlite_engine)
    validation = report.validation
    assert validation is not None and validation.window.startswith("validation window [2026-11-02")
    assert report.window.startswith("test window after 2026-11-03")
    variants = report.tuning["variants"]
    # Coordinate ascent starts at the served configs: it never ends below them.
    assert np.mean(variants["fused (tuned)"]) >= np.mean(variants["fused (defaults)"])
    assert validation.recall("fused (tuned)", 50) >= validation.recall("fused (defaults)", 50)
    with make_sessionmaker(sqlite_engine)() as session:
        stored = load_route_configs(session)
        audits = session.scalars(select(RouteConfigAudit).where(RouteConfigAudit.changed_by == "tuner")).all()
    assert {a.route for a in audits} == set(report.tuning["changed"])
    for route, change in report.tuning["changed"].items():
        assert stored[route].as_dict() == change["to"]
    # The test window was replayed with the fit: each served route asked for its fitted quota.
    for route, config in stored.items():
        if config.enabled and route in report.asked:
            assert report.asked[route] == config.quota, route
