"""Synthetic worlds into SQL, and the ``recall ingest`` command line end to end."""

from __future__ import annotations

import json

import pytest
from rich.console import Console
from sqlalchemy import func, select
from typer.testing import CliRunner

from jobs.cli import app
from jobs.ingest.synthetic import ingest_synthetic
from recall.db import make_engine, make_sessionmaker
from recall.models import Article, Event, User
from recall.sqlstore import iter_articles, iter_events
from recall.synthetic import generate

QUIET = Console(quiet=True)


@pytest.fixture(scope="module")
def world():
    return generate(articles=150, users=25, days=3, seed=5)


def test_a_world_round_trips_through_sql(engine, world):
    report = ingest_synthetic(engine, world, QUIET)
    assert (report.articles_stored, report.events_stored, report.rejected) == (150, len(world.events), 0)
    with make_sessionmaker(engine)() as session:
        assert list(iter_articles(session)) == sorted(world.articles, key=lambda a: a.id)
        assert list(iter_events(session)) == world.events
        assert session.scalar(select(func.count()).select_from(User)) == 25


def test_ingesting_a_world_twice_stores_nothing_new(engine, world):
    ingest_synthetic(engine, world, QUIET)
    again = ingest_synthetic(engine, world, QUIET)
    assert again.stored == 0 and again.rows_read == 150 + len(world.events)


def row_counts(url: str) -> tuple[int, int]:
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            return (session.scalar(select(func.count()).select_from(Article)),
                    session.scalar(select(func.count()).select_from(Event)))
    finally:
        engine.dispose()


def test_cli_synthetic_migrates_a_fresh_database_and_is_idempotent(cli_env):
    args = ["ingest", "synthetic", "--articles", "40", "--users", "6", "--days", "2", "--seed", "3"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "events stored" in first.output
    counts = row_counts(cli_env)
    assert counts[0] == 40 and counts[1] > 0

    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    assert row_counts(cli_env) == counts


def test_cli_jsonl_commands_and_bad_paths(cli_env, tmp_path):
    articles, events = tmp_path / "articles.jsonl", tmp_path / "events.jsonl"
    articles.write_text(json.dumps({"id": "a1", "title": "t"}) + "\n{oops\n")
    click = {"user_id": "u1", "article_id": "a1", "kind": "click", "ts": 1795424405}
    events.write_text(json.dumps(click) + "\n")
    result = CliRunner().invoke(app, ["ingest", "articles", str(articles)])
    assert result.exit_code == 0, result.output
    assert "articles.jsonl:2" in result.output  # the bad line is named in the summary
    assert CliRunner().invoke(app, ["ingest", "events", str(events)]).exit_code == 0
    assert row_counts(cli_env) == (1, 1)
    assert CliRunner().invoke(app, ["ingest", "tnews", str(tmp_path / "missing.jsonl")]).exit_code != 0
    assert CliRunner().invoke(app, ["ingest", "mind"]).exit_code != 0
