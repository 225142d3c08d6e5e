"""Toutiao JSONL ingest: the head of the real file, and bad rows, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import func, select

from jobs.ingest.tnews import ingest_tnews
from recall.db import make_sessionmaker
from recall.models import Article

QUIET = Console(quiet=True)
HEAD = 1500


@pytest.fixture
def tnews_head(shared_data: Path, tmp_path: Path) -> Path:
    """The first lines of the real file (a temporary copy: the test stays fast)."""
    head = tmp_path / "tnews_head.jsonl"
    with (shared_data / "tnews" / "tnews_train.jsonl").open(encoding="utf-8") as source:
        head.write_text("".join(itertools.islice(source, HEAD)), encoding="utf-8")
    return head


def test_real_headlines_become_articles_with_ranked_tags(engine, tnews_head):
    report = ingest_tnews(engine, tnews_head, QUIET)
    assert (report.rows_read, report.articles_stored, report.rejected) == (HEAD, HEAD, 0)
    first_lines = [json.loads(line) for line in itertools.islice(tnews_head.open(encoding="utf-8"), 3)]
    with make_sessionmaker(engine)() as session:
        assert session.scalar(select(func.count()).select_from(Article)) == HEAD
        tagged = session.get(Article, "tn1")
        untagged = session.get(Article, "tn0")
    assert tagged.title == first_lines[1]["title"] and tagged.category == "news_finance"
    assert [tag for tag, _ in tagged.tags] == first_lines[1]["keywords"]
    assert [weight for _, weight in tagged.tags] == [1.0, 0.9, 0.8, 0.7, 0.6, 0.5]
    assert untagged.tags == [] and untagged.published_at is None and untagged.source == "tnews"

    again = ingest_tnews(engine, tnews_head, QUIET)
    assert again.stored == 0


def test_bad_lines_are_skipped_and_reported(engine, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([
        json.dumps({"id": "t1", "category": "news_tech", "title": "好", "keywords": ["a", "b", "a"]}),
        "{not json",
        json.dumps({"category": "news_tech", "title": "no id"}),
        json.dumps({"id": "t2", "title": "tags are not a list", "keywords": "a,b"}),
        json.dumps(["a", "list"]),
        "",
        json.dumps({"id": 3, "title": "numeric id"}),
    ]) + "\n", encoding="utf-8")
    report = ingest_tnews(engine, path, QUIET)
    assert [line for _, line, _ in report.errors] == [2, 3, 4, 5]
    assert "missing id" in report.errors[1][2] and "list of strings" in report.errors[2][2]
    assert (report.rows_read, report.articles_stored, report.rejected) == (6, 2, 4)
    with make_sessionmaker(engine)() as session:
        assert session.get(Article, "t1").tags == [["a", 1.0], ["b", 0.9]]
        assert session.get(Article, "3").title == "numeric id"
