"""Writes a generated world (recall/synthetic.py) into SQL, like any other source.

``ingest_synthetic`` stores a ``SyntheticWorld``'s records through ``recall.sqlstore`` (small
worlds: the demo, the tests). ``ingest_synthetic_bulk`` streams a ``PlannedWorld``'s events as
arrays, a chunk at a time, through ``jobs.ingest.bulk`` (MIND-large: 25M events in minutes, no
Python object per event) and ends with the same rows: the same articles (through the same
upserts), events, and users with the time of their first event.
"""

from __future__ import annotations

import math

import numpy as np
from rich.console import Console
from sqlalchemy import Engine

from jobs.ingest.bulk import BulkInsert, indexes_deferred, insert_columns
from jobs.ingest.common import IngestReport, IngestRun
from recall.synthetic import SESSIONS_PER_CHUNK, PlannedWorld, SyntheticWorld

EVENTS = BulkInsert(
    table="events",
    columns={
        "event_key": "CAST(:key_prefix AS TEXT) || n",
        "user_id": "'u' || user_n",
        "article_id": "'a' || article_n",
        "kind": "CASE WHEN click = 1 THEN 'click' ELSE 'impression' END",
        "ts": "ts",
        "impression_id": "CAST(:impression_prefix AS TEXT) || session_n",
        "source": "'synthetic'",
    },
    order_by="n",  # ids in stream order, as the row path gives them
    conflict="ON CONFLICT (event_key) DO NOTHING",
)
# As recall.sqlstore records users: first seen at their earliest event, only ever moved earlier.
USERS = BulkInsert(
    table="users",
    columns={"id": "'u' || user_n", "first_seen_at": "ts"},
    order_by="user_n",
    conflict="ON CONFLICT (id) DO UPDATE SET first_seen_at = excluded.first_seen_at "
             "WHERE users.first_seen_at IS NULL OR excluded.first_seen_at < users.first_seen_at",
)
USERS_PER_STATEMENT = 250_000


def ingest_synthetic(engine: Engine, world: SyntheticWorld, console: Console | None = None) -> IngestReport:
    with IngestRun(engine, "synthetic", console) as run:
        run.write(world.articles, total=len(world.articles), description="articles")
        run.write(world.events, total=len(world.events), description="events")
    return run.report


def ingest_synthetic_bulk(engine: Engine, world: PlannedWorld, console: Console | None = None) -> IngestReport:
    with IngestRun(engine, "synthetic", console) as run:
        run.write(world.articles(), total=len(world.topic_of), description="articles")
        prefixes = {"key_prefix": world.event_key_prefix, "impression_prefix": world.impression_prefix}
        first_seen = np.full(world.users, np.datetime64("NaT"), dtype="datetime64[us]")
        chunks = math.ceil(len(world.session_hours) / SESSIONS_PER_CHUNK)
        with indexes_deferred(engine, "events") as keys_unchecked:
            for events in run.progress(world.event_chunks(), total=chunks, description="events"):
                with engine.begin() as connection:
                    run.report.events_stored += insert_columns(connection, EVENTS, {
                        "n": events.n, "user_n": events.user, "article_n": events.article,
                        "click": events.click.astype(np.int64), "ts": events.ts, "session_n": events.session,
                    }, prefixes, conflicts=not keys_unchecked)  # a world's keys are unique
                run.report.rows_read += len(events)
                # Chunks come in time order: a reader's first event in the first chunk that has one.
                users, first = np.unique(events.user, return_index=True)
                unseen = np.isnat(first_seen[users])
                first_seen[users[unseen]] = events.ts[first[unseen]]
        seen = np.flatnonzero(~np.isnat(first_seen))
        for part in range(0, len(seen), USERS_PER_STATEMENT):
            users = seen[part:part + USERS_PER_STATEMENT]
            with engine.begin() as connection:
                insert_columns(connection, USERS, {"user_n": users, "ts": first_seen[users]})
    return run.report
