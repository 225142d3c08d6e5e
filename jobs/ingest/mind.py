"""MIND (Microsoft News Dataset): ``news.tsv`` and ``behaviors.tsv``.

- news.tsv -> articles (source "mind"). MIND has no tags: they are the entity labels (title
  entities weigh 1.0 x confidence, abstract entities 0.5 x confidence, summed per label) plus the
  subcategory (0.8). MIND has no media nor publish time either: ``published_at`` is the earliest
  event that references the article (``recall.sqlstore`` keeps it so); an article no event
  references keeps ``None``, which the catalogue reads as "always live".
- behaviors.tsv -> events. Each shown article is an impression; a shown-and-clicked one also a
  click one second later. History clicks have no time in MIND: they are placed one second apart,
  oldest first, just before the user's earliest impression in the file (found by a first pass).
  Articles the behaviours reference but news.tsv lacks become id-only articles.

Either file may be loaded alone and in either order; the end state is the same.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import Engine

from jobs.ingest.common import (
    MAX_ID_LENGTH,
    BadRow,
    IngestReport,
    IngestRun,
    checked_length,
    parse_json,
)
from recall.domain import HISTORY_SOURCE, ArticleRecord, EventRecord

SOURCE = "mind"
TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"  # "11/12/2019 2:14:46 PM", UTC
NEWS_COLUMNS = 8
BEHAVIOR_COLUMNS = 5
TITLE_ENTITY_WEIGHT = 1.0
ABSTRACT_ENTITY_WEIGHT = 0.5
SUBCATEGORY_WEIGHT = 0.8
CLICK_DELAY = timedelta(seconds=1)
IMPRESSION_DIGEST_BYTES = 5


def ingest_mind(engine: Engine, news_path: Path | None = None, behaviors_path: Path | None = None,
                console: Console | None = None) -> IngestReport:
    with IngestRun(engine, SOURCE, console) as run:
        if news_path is not None:
            run.load(news_path, parse_news_line)
        if behaviors_path is not None:
            earliest: dict[str, datetime] = {}
            for row in run.scan(behaviors_path, lambda line: [parse_behavior_line(line)]):
                if row.user_id not in earliest or row.ts < earliest[row.user_id]:
                    earliest[row.user_id] = row.ts
            run.load(behaviors_path, lambda line: behavior_events(parse_behavior_line(line), earliest))
    return run.report


def _entities(text: str, column: str) -> list[dict[str, Any]]:
    if not text.strip():
        return []
    try:
        entities = parse_json(text)
    except ValueError as error:
        raise BadRow(f"{column} is not JSON: {error}") from error
    if not isinstance(entities, list) or not all(isinstance(e, dict) and e.get("Label") for e in entities):
        raise BadRow(f"{column} is not a list of entities with a Label")
    return entities


def _confidence(entity: dict[str, Any]) -> float:
    try:
        return float(entity.get("Confidence", 1.0))
    except (TypeError, ValueError) as error:
        raise BadRow(f"entity {entity['Label']!r} has a bad Confidence") from error


def parse_news_line(line: str) -> list[ArticleRecord]:
    columns = line.split("\t")
    if len(columns) != NEWS_COLUMNS:
        raise BadRow(f"expected {NEWS_COLUMNS} tab-separated columns, found {len(columns)}")
    news_id, category, subcategory, title, abstract, url, title_json, abstract_json = (
        column.strip() for column in columns)
    if not news_id:
        raise BadRow("missing news_id")
    for name, value in [("news_id", news_id), ("category", category), ("subcategory", subcategory)]:
        checked_length(value, name)

    weights: dict[str, float] = {}
    entities: dict[str, dict[str, Any]] = {}  # by label, the title's first
    for column, text, weight in [("title_entities", title_json, TITLE_ENTITY_WEIGHT),
                                 ("abstract_entities", abstract_json, ABSTRACT_ENTITY_WEIGHT)]:
        for entity in _entities(text, column):
            label, confidence = entity["Label"], _confidence(entity)
            weights[label] = weights.get(label, 0.0) + weight * confidence
            entities.setdefault(label, {"label": label, "type": entity.get("Type"),
                                        "wikidata_id": entity.get("WikidataId"), "confidence": confidence})
    if subcategory:
        weights[subcategory] = weights.get(subcategory, 0.0) + SUBCATEGORY_WEIGHT
    tags = sorted(((tag, round(w, 4)) for tag, w in weights.items()), key=lambda tw: (-tw[1], tw[0]))

    return [ArticleRecord(
        id=news_id,
        title=title or None,
        body=abstract or None,
        category=category or None,
        subcategory=subcategory or None,
        tags=tuple(tags),
        entities=tuple(entities.values()),
        url=url or None,
        source=SOURCE,
    )]


@dataclass(frozen=True)
class BehaviorRow:
    impression_id: str
    user_id: str
    ts: datetime
    history: list[str]  # oldest first
    shown: list[tuple[str, bool | None]]  # (news id, clicked); None when the file has no labels


def parse_behavior_line(line: str) -> BehaviorRow:
    columns = line.split("\t")
    if len(columns) != BEHAVIOR_COLUMNS:
        raise BadRow(f"expected {BEHAVIOR_COLUMNS} tab-separated columns, found {len(columns)}")
    impression_id, user_id, time_text, history, impressions = (c.strip() for c in columns)
    if not impression_id or not user_id:
        raise BadRow("missing impression_id or user_id")
    # MIND numbers impressions per file: train and dev both start at 1. An impression is named by
    # its number and a digest of its user and time, so two files loaded together never merge two
    # impressions (nor drop one's events as repeats), while loading one file twice still does.
    checked_length(impression_id, "impression_id", MAX_ID_LENGTH - 2 * IMPRESSION_DIGEST_BYTES - 1)
    checked_length(user_id, "user_id")
    digest = hashlib.blake2b(f"{user_id}\t{time_text}".encode(), digest_size=IMPRESSION_DIGEST_BYTES).hexdigest()
    impression_id = f"{impression_id}:{digest}"
    try:
        ts = datetime.strptime(time_text, TIME_FORMAT)
    except ValueError as error:
        raise BadRow(f"bad time {time_text!r} (expected like '11/12/2019 2:14:46 PM')") from error
    shown = []
    for entry in impressions.split():
        # MIND's test split shows articles without a click label: they are impressions only.
        news_id, dash, label = entry.partition("-")
        if not news_id or (dash and label not in ("0", "1")):
            raise BadRow(f"bad impression entry {entry!r} (expected like 'N123-1')")
        checked_length(news_id, "news id")
        shown.append((news_id, label == "1" if dash else None))
    clicked_before = history.split()
    for news_id in clicked_before:
        checked_length(news_id, "news id")
    return BehaviorRow(impression_id, user_id, ts, clicked_before, shown)


def behavior_events(row: BehaviorRow, earliest: dict[str, datetime]) -> list[EventRecord]:
    """Impressions, their clicks, and the history clicks placed before ``earliest[user]``."""
    events = []
    first_shown = earliest[row.user_id]
    seen_in_history = set()
    for position, news_id in enumerate(row.history):
        if news_id in seen_in_history:  # MIND histories repeat ids; the first click counts
            continue
        seen_in_history.add(news_id)
        events.append(EventRecord(
            key=f"mind:h:{row.user_id}:{news_id}", user_id=row.user_id, article_id=news_id, kind="click",
            ts=first_shown - timedelta(seconds=len(row.history) - position), source=HISTORY_SOURCE,
        ))
    for news_id, clicked in row.shown:
        events.append(EventRecord(
            key=f"mind:i:{row.impression_id}:{news_id}", user_id=row.user_id, article_id=news_id,
            kind="impression", ts=row.ts, impression_id=row.impression_id, source=SOURCE,
        ))
        if clicked:
            events.append(EventRecord(
                key=f"mind:c:{row.impression_id}:{news_id}", user_id=row.user_id, article_id=news_id,
                kind="click", ts=row.ts + CLICK_DELAY, impression_id=row.impression_id, source=SOURCE,
            ))
    return events
