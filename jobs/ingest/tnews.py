"""Toutiao headlines (TNEWS JSONL): ``{"id", "category", "title", "keywords"}`` a line.

Keywords become tags, strongest first (1.0, 0.9, ...). The data has no publish time, so
``published_at`` stays ``None`` ("always live").
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from sqlalchemy import Engine

from jobs.ingest.common import (
    MAX_ID_LENGTH,
    IngestReport,
    IngestRun,
    json_object,
    optional_text,
    ranked_tags,
    required_id,
)
from recall.domain import ArticleRecord

SOURCE = "tnews"


def ingest_tnews(engine: Engine, path: Path, console: Console | None = None) -> IngestReport:
    with IngestRun(engine, SOURCE, console) as run:
        run.load(path, parse_tnews_line)
    return run.report


def parse_tnews_line(line: str) -> list[ArticleRecord]:
    row = json_object(line)
    return [ArticleRecord(
        id=required_id(row, "id"),
        title=optional_text(row, "title"),
        category=optional_text(row, "category", MAX_ID_LENGTH),
        tags=ranked_tags(row.get("keywords") or []),
        source=SOURCE,
    )]
