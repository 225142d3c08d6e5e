"""The generic JSONL formats (docs/formats.md), on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
from datetime import datetime
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import func, select

from jobs.ingest.jsonl import ingest_jsonl_articles, ingest_jsonl_events
from recall.db import make_sessionmaker
from recall.models import Article, Event, User

QUIET = Console(quiet=True)


def write_lines(path: Path, rows: list) -> Path:
    path.write_text("\n".join(row if isinstance(row, str) else json.dumps(row) for row in rows) + "\n")
    return path


ARTICLES = [
    {"id": "a1", "title": "Late winner", "body": "A header.", "category": "sports", "subcategory": "football",
     "media_id": "daily_sport", "tags": ["football", "derby"], "image": "images/a1.jpg",
     "url": "https://example.org/a1", "published_at": "2026-11-23T08:00:00+01:00",
     "expires_at": "2026-11-26T07:00:00Z",
     "entities": [{"label": "Arsenal", "type": "O", "wikidata_id": "Q9617", "confidence": 1.0}]},
    {"id": "a2", "tags": [["markets", 0.4], ["stocks", 0.9]], "published_at": 1795420800, "status": "hidden"},
    {"id": "a3", "tags": {"ai": 0.7, "chips": 1.2}},
    '{"id": "broken"',
    {"title": "no id"},
    {"id": "a4", "published_at": "last tuesday"},
    {"id": "a5", "status": "deleted"},
    {"id": "a6", "tags": [["x", "heavy"]]},
    {"id": "a7", "category": "c" * 200},
]


def test_articles_in_every_documented_shape(engine, tmp_path):
    report = ingest_jsonl_articles(engine, write_lines(tmp_path / "articles.jsonl", ARTICLES), QUIET)
    assert (report.rows_read, report.articles_stored, report.rejected) == (9, 3, 6)
    assert [line for _, line, _ in report.errors] == [4, 5, 6, 7, 8, 9]
    with make_sessionmaker(engine)() as session:
        a1, a2, a3 = (session.get(Article, i) for i in ("a1", "a2", "a3"))
    assert a1.tags == [["football", 1.0], ["derby", 0.9]]
    assert a1.published_at == datetime(2026, 11, 23, 7, 0, 0)  # +01:00 converted to naive UTC
    assert a1.expires_at == datetime(2026, 11, 26, 7, 0, 0)
    assert (a1.image_ref, a1.media_id, a1.entities[0]["label"]) == ("images/a1.jpg", "daily_sport", "Arsenal")
    assert a2.tags == [["stocks", 0.9], ["markets", 0.4]] and a2.status == "hidden"
    assert a2.published_at == datetime(2026, 11, 23, 8, 0, 0)  # unix seconds
    assert a3.tags == [["chips", 1.2], ["ai", 0.7]] and a3.published_at is None and a3.source == "jsonl"


def test_reloading_articles_changes_only_what_changed(engine, tmp_path):
    path = write_lines(tmp_path / "articles.jsonl", ARTICLES[:3])
    ingest_jsonl_articles(engine, path, QUIET)
    assert ingest_jsonl_articles(engine, path, QUIET).stored == 0
    edited = write_lines(tmp_path / "edited.jsonl", [{**ARTICLES[0], "title": "Edited"}, ARTICLES[1]])
    assert ingest_jsonl_articles(engine, edited, QUIET).articles_stored == 1


SHOWN = {"user_id": "u1", "article_id": "a1", "kind": "impression", "ts": "2026-11-23T09:00:00Z",
         "impression_id": "r1"}
EVENTS = [
    SHOWN,
    {"user_id": "u1", "article_id": "a1", "kind": "click", "ts": 1795424405, "impression_id": "r1"},
    {"id": "api:77", "user_id": 42, "article_id": "a9", "kind": "click", "ts": "2026-11-23T10:00:00"},
    SHOWN,
    {"user_id": "u2", "article_id": "a1", "kind": "like", "ts": "2026-11-23T09:00:00Z"},
    {"user_id": "u2", "article_id": "a1", "kind": "click"},
    {"user_id": "u2", "kind": "click", "ts": "2026-11-23T09:00:00Z"},
    {"user_id": "u2", "article_id": "a1", "kind": "click", "ts": True},
    "[1, 2",
]


def test_events_are_keyed_by_id_or_content(engine, tmp_path):
    path = write_lines(tmp_path / "events.jsonl", EVENTS)
    report = ingest_jsonl_events(engine, path, QUIET)
    # The fourth line repeats the first: same content, same key, stored once.
    assert (report.rows_read, report.events_stored, report.rejected) == (9, 3, 5)
    assert [line for _, line, _ in report.errors] == [5, 6, 7, 8, 9]
    with make_sessionmaker(engine)() as session:
        events = {e.event_key: e for e in session.scalars(select(Event))}
        users = set(session.scalars(select(User.id)))
        a9 = session.get(Article, "a9")
    assert "api:77" in events and events["api:77"].user_id == "42"
    assert sum(key.startswith("jsonl:") and len(key) == 46 for key in events) == 2
    click = next(e for e in events.values() if e.kind == "click" and e.impression_id == "r1")
    assert click.ts == datetime(2026, 11, 23, 9, 0, 5)
    assert users == {"u1", "42"}
    assert a9.id_only and a9.published_at == datetime(2026, 11, 23, 10, 0, 0)

    again = ingest_jsonl_events(engine, path, QUIET)
    assert again.stored == 0
    with make_sessionmaker(engine)() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 3


@pytest.mark.parametrize("line", [
    b"\xff\xfe not utf-8",
    b'{"id": "x", "title": "lone surrogate \\ud800"}',
    b'{"id": "x", "title": "escaped NUL \\u0000"}',
    b'{"id": "x", "title": "raw NUL \x00"}',
], ids=["latin-1", "surrogate", "escaped-nul", "raw-nul"])
def test_text_no_database_can_store_is_one_bad_row(engine, tmp_path, line):
    path = tmp_path / "odd.jsonl"
    path.write_bytes(line + b"\n" + json.dumps({"id": "ok"}).encode() + b"\n")
    report = ingest_jsonl_articles(engine, path, QUIET)
    assert (report.rejected, report.errors[0][1], report.articles_stored) == (1, 1, 1)


def test_summary_shows_messages_verbatim(sqlite_engine, tmp_path):
    path = write_lines(tmp_path / "[odd] name.jsonl", [{"id": "a1", "tags": 5}, {"id": "x", "title": "[/red]"}])
    report = ingest_jsonl_articles(sqlite_engine, path, QUIET)
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(report.table())
    shown = console.export_text()
    assert "[odd] name.jsonl:1" in shown and "a list of [tag, weight] pairs" in shown
