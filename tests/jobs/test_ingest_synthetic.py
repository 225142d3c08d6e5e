"""Synthetic worlds into SQL, and the ``recall ingest`` command line end to end."""

from __future__ import annotations

import json

import pytest
from rich.console import Console
from sqlalchemy import func, select
from typer.testing import CliRunner

from jobs.cli import app
from jobs.ingest.bulk import _secondary_indexes, _unique_constraints
from jobs.ingest.synthetic import ingest_synthetic, ingest_synthetic_bulk
from recall.db import make_engine, make_sessionmaker
from recall.models import Article, Event, User
from recall.sqlstore import ARTICLES, EVENTS, USERS, iter_articles, iter_events
from recall.synthetic import generate, plan

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


def stored_rows(engine) -> dict[str, list[tuple]]:
    """Every stored article, event and user, in id order; not the changed-at stamp (the clock)."""
    with engine.connect() as connection:
        return {table.name: [tuple(row) for row in connection.execute(
            select(*(column for column in table.c if column.name != "updated_at")).order_by(table.c.id))]
            for table in (ARTICLES, EVENTS, USERS)}


def empty_tables(engine) -> None:
    with engine.begin() as connection:
        for table in (EVENTS, USERS, ARTICLES):
            connection.execute(table.delete())


def test_the_bulk_path_stores_exactly_what_the_row_path_stores(engine):
    row_report = ingest_synthetic(engine, generate(articles=150, users=25, days=3, seed=5), QUIET)
    by_rows = stored_rows(engine)
    empty_tables(engine)
    with engine.connect() as connection:
        indexes = sorted(_secondary_indexes(connection, "events"))
        constraints = _unique_constraints(connection, "events")
    bulk_report = ingest_synthetic_bulk(engine, plan(articles=150, users=25, days=3, seed=5), QUIET)
    by_bulk = stored_rows(engine)

    assert (bulk_report.articles_stored, bulk_report.events_stored, bulk_report.rows_read) == \
        (row_report.articles_stored, row_report.events_stored, row_report.rows_read)
    assert len(by_rows["events"]) > 1000 and len(by_rows["users"]) == 25
    first_id = by_bulk["events"][0][0]  # ids go on from the deleted rows' on PostgreSQL
    assert [(n - by_rows["events"][0][0] + first_id, *rest) for n, *rest in by_rows["events"]] == by_bulk["events"]
    assert by_bulk["articles"] == by_rows["articles"] and by_bulk["users"] == by_rows["users"]
    with engine.connect() as connection:  # the indexes and constraints put aside for the load are back
        assert indexes and sorted(_secondary_indexes(connection, "events")) == indexes
        assert _unique_constraints(connection, "events") == constraints
        assert bool(constraints) == (engine.dialect.name == "postgresql")


def test_the_bulk_path_stores_nothing_twice_also_over_the_row_path(engine, world):
    ingest_synthetic(engine, world, QUIET)
    before = stored_rows(engine)
    again = ingest_synthetic_bulk(engine, plan(articles=150, users=25, days=3, seed=5), QUIET)
    assert (again.stored, again.rows_read) == (0, 150 + len(world.events))
    assert stored_rows(engine) == before


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


def test_cli_synthetic_bulk_with_an_event_count(cli_env):
    args = ["ingest", "synthetic", "--articles", "60", "--users", "30", "--days", "3", "--seed", "3",
            "--start", "2026-11-01", "--events", "1500"]
    bulk = CliRunner().invoke(app, [*args, "--bulk"])
    assert bulk.exit_code == 0, bulk.output
    articles, events = row_counts(cli_env)
    assert articles == 60 and 1200 < events < 1800
    rows = CliRunner().invoke(app, [*args, "--rows"])  # the same world: nothing new
    assert rows.exit_code == 0, rows.output
    assert row_counts(cli_env) == (articles, events)


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
