"""The generic JSONL formats, one JSON object a line (documented in docs/formats.md)."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import Engine

from jobs.ingest.common import (
    MAX_ID_LENGTH,
    BadRow,
    IngestReport,
    IngestRun,
    json_object,
    optional_text,
    parse_timestamp,
    ranked_tags,
    required_id,
)
from recall.domain import ArticleRecord, EventRecord

SOURCE = "jsonl"
STATUSES = ("active", "hidden")
KINDS = ("impression", "click")


def ingest_jsonl_articles(engine: Engine, path: Path, console: Console | None = None) -> IngestReport:
    with IngestRun(engine, "jsonl articles", console) as run:
        run.load(path, parse_article_line)
    return run.report


def ingest_jsonl_events(engine: Engine, path: Path, console: Console | None = None) -> IngestReport:
    with IngestRun(engine, "jsonl events", console) as run:
        run.load(path, parse_event_line)
    return run.report


def _weight(tag: Any, weight: Any) -> tuple[str, float]:
    if not isinstance(tag, str) or not tag.strip():
        raise BadRow(f"a tag must be a non-empty string, got {tag!r}")
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
        raise BadRow(f"tag {tag!r} has a weight that is not a number: {weight!r}")
    return tag.strip(), float(weight)


def parse_tags(value: Any) -> tuple[tuple[str, float], ...]:
    """["a", "b"] (strongest first), [["a", 0.9], ...] or {"a": 0.9, ...} -> strongest first."""
    if not value:
        return ()
    if isinstance(value, list) and all(isinstance(tag, str) for tag in value):
        return ranked_tags(value)
    if isinstance(value, dict):
        pairs = [_weight(tag, weight) for tag, weight in value.items()]
    elif isinstance(value, list) and all(isinstance(pair, list) and len(pair) == 2 for pair in value):
        pairs = [_weight(tag, weight) for tag, weight in value]
    else:
        raise BadRow("tags must be a list of strings, a list of [tag, weight] pairs or an object")
    return tuple(sorted(pairs, key=lambda pair: -pair[1]))


def _optional_time(row: dict[str, Any], name: str) -> datetime | None:
    return None if row.get(name) in (None, "") else parse_timestamp(row[name])


def parse_article_line(line: str) -> list[ArticleRecord]:
    row = json_object(line)
    entities = row.get("entities") or []
    if not isinstance(entities, list) or not all(isinstance(e, dict) for e in entities):
        raise BadRow("entities must be a list of objects")
    status = row.get("status") or "active"
    if status not in STATUSES:
        raise BadRow(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    return [ArticleRecord(
        id=required_id(row, "id"),
        title=optional_text(row, "title"),
        body=optional_text(row, "body"),
        category=optional_text(row, "category", MAX_ID_LENGTH),
        subcategory=optional_text(row, "subcategory", MAX_ID_LENGTH),
        media_id=optional_text(row, "media_id", MAX_ID_LENGTH),
        tags=parse_tags(row.get("tags")),
        entities=tuple(entities),
        image_ref=optional_text(row, "image"),
        url=optional_text(row, "url"),
        published_at=_optional_time(row, "published_at"),
        expires_at=_optional_time(row, "expires_at"),
        status=status,
        source=SOURCE,
    )]


def parse_event_line(line: str) -> list[EventRecord]:
    row = json_object(line)
    user_id, article_id = required_id(row, "user_id"), required_id(row, "article_id")
    kind = row.get("kind")
    if kind not in KINDS:
        raise BadRow(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if row.get("ts") in (None, ""):
        raise BadRow("missing ts")
    ts = parse_timestamp(row["ts"])
    impression_id = None if row.get("impression_id") is None else required_id(row, "impression_id")
    key = None if row.get("id") is None else required_id(row, "id")
    if key is None:
        # Without an id, the same event written twice is the same event: key it by its content.
        content = json.dumps([user_id, article_id, kind, ts.isoformat(), impression_id])
        key = f"{SOURCE}:{hashlib.sha1(content.encode()).hexdigest()}"
    return [EventRecord(key=key, user_id=user_id, article_id=article_id, kind=kind, ts=ts,
                        impression_id=impression_id, source=SOURCE)]
