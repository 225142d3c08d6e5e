"""SQL reads and writes shared by ingest, the API and the nightly job (SQLite and PostgreSQL).

Writes are batched (one executemany per statement, never a round trip per row) and rely on
ON CONFLICT so concurrent writers and re-runs are safe. Functions never commit: the caller owns
the transaction.

Publish times: MIND articles and ids only known from events ("ref") have no publish time of
their own, so theirs is the first moment the events show them. ``insert_events`` lowers it as
earlier events arrive and ``upsert_articles`` never replaces a known publish time with none, so
loading articles before or after their events ends in the same state.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import ColumnElement, Table, bindparam, case, func, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from recall.domain import ArticleRecord, EventRecord
from recall.models import Article, Event, User

ARTICLES: Table = Article.__table__
EVENTS: Table = Event.__table__
USERS: Table = User.__table__

# Sources whose articles carry no publish time: it is the earliest event that references them.
SOURCES_TIMED_BY_EVENTS = ("ref", "mind")
# Keeps IN lists and multi-row statements well under SQLite's and PostgreSQL's parameter limits.
CHUNK = 5000

# Compared with the stored row to tell whether an upsert changes anything.
_COMPARED = ("content_hash", "url", "published_at", "expires_at", "status", "source", "id_only")


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _insert_for(session: Session) -> Callable[[Table], Any]:
    """The dialect's INSERT, the one that knows ON CONFLICT."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert
    if name == "sqlite":
        return sqlite.insert
    raise ValueError(f"unsupported database dialect {name!r} (SQLite and PostgreSQL are)")


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def content_hash(record: ArticleRecord) -> str:
    """sha256 over what an article says, so re-ingesting unchanged text is recognised cheaply."""
    payload = [record.title, record.body, record.category, record.subcategory, record.media_id,
               [list(tag) for tag in record.tags], list(record.entities), record.image_ref]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _article_row(record: ArticleRecord, now: datetime) -> dict[str, Any]:
    return {
        "id": record.id,
        "title": record.title,
        "body": record.body,
        "category": record.category,
        "subcategory": record.subcategory,
        "media_id": record.media_id,
        "tags": [[tag, float(weight)] for tag, weight in record.tags],
        "entities": list(record.entities),
        "image_ref": record.image_ref,
        "url": record.url,
        "published_at": record.published_at,
        "expires_at": record.expires_at,
        "status": record.status,
        "source": record.source,
        "id_only": record.id_only,
        "content_hash": content_hash(record),
        "updated_at": now,
    }


def _last_full_record_per_id(records: Sequence[ArticleRecord]) -> dict[str, ArticleRecord]:
    """One record per id: the last one, except that an id-only record never replaces a full one."""
    chosen: dict[str, ArticleRecord] = {}
    for record in records:
        previous = chosen.get(record.id)
        if previous is None or not record.id_only or previous.id_only:
            chosen[record.id] = record
    return chosen


def upsert_articles(session: Session, records: Sequence[ArticleRecord]) -> int:
    """Insert or update articles by id; returns how many rows were inserted or changed.

    Id-only records only fill gaps (a stored article is never replaced by one), and a record
    without a publish time keeps the stored one.
    """
    changed = 0
    now = _utcnow()
    for chunk in _chunks(list(_last_full_record_per_id(records).values())):
        stored = {
            row.id: row
            for row in session.execute(
                select(ARTICLES.c.id, *(ARTICLES.c[name] for name in _COMPARED))
                .where(ARTICLES.c.id.in_([record.id for record in chunk])))
        }
        full_rows, id_only_rows = [], []
        for record in chunk:
            row = _article_row(record, now)
            old = stored.get(record.id)
            if old is not None:
                if record.id_only:
                    continue
                after = {**row, "published_at": row["published_at"] or old.published_at}
                if all(after[name] == getattr(old, name) for name in _COMPARED):
                    continue
            (id_only_rows if record.id_only else full_rows).append(row)
        insert = _insert_for(session)
        if full_rows:
            stmt = insert(ARTICLES)
            columns = {name: stmt.excluded[name] for name in full_rows[0] if name != "id"}
            columns["published_at"] = func.coalesce(stmt.excluded.published_at, ARTICLES.c.published_at)
            session.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=columns), full_rows)
        if id_only_rows:
            session.execute(insert(ARTICLES).on_conflict_do_nothing(index_elements=["id"]), id_only_rows)
        changed += len(full_rows) + len(id_only_rows)
    return changed


def claim_pending_events(session: Session, limit: int, keys: Sequence[str] | None = None) -> list[EventRecord]:
    """Take up to ``limit`` events of the outbox (stored, not yet applied online; only those of
    ``keys`` when given), oldest first: one UPDATE ... RETURNING clears their flag, so two
    workers draining at once never apply the same event twice. The caller commits, and calls
    ``set_pending`` again if applying fails."""
    oldest = select(EVENTS.c.id).where(EVENTS.c.pending_online)
    if keys is not None:
        oldest = oldest.where(EVENTS.c.event_key.in_(list(keys)))
    oldest = oldest.order_by(EVENTS.c.ts, EVENTS.c.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        oldest = oldest.with_for_update(skip_locked=True)
    rows = session.execute(
        update(EVENTS).where(EVENTS.c.id.in_(oldest.scalar_subquery()), EVENTS.c.pending_online)
        .values(pending_online=False)
        .returning(EVENTS.c.event_key, EVENTS.c.user_id, EVENTS.c.article_id, EVENTS.c.kind, EVENTS.c.ts,
                   EVENTS.c.impression_id, EVENTS.c.source)).all()
    return sorted((EventRecord(key=r.event_key, user_id=r.user_id, article_id=r.article_id, kind=r.kind, ts=r.ts,
                               impression_id=r.impression_id, source=r.source) for r in rows),
                  key=lambda e: (e.ts, e.key))


def set_pending(session: Session, keys: Sequence[str], pending: bool = True) -> int:
    """Put events (back) into the outbox, or take them out."""
    changed = 0
    for chunk in _chunks(list(keys)):
        changed += session.execute(update(EVENTS).where(EVENTS.c.event_key.in_(chunk))
                                   .values(pending_online=pending)).rowcount
    return changed


def insert_events(session: Session, records: Sequence[EventRecord]) -> int:
    """Append events (a known event_key is skipped); returns how many were new.

    For the new events, also records their users (first_seen_at = earliest event) and makes sure
    every article they reference exists, as an id-only row when nothing else is known about it.

    New means "absent when the batch was read": should another writer store the same key at the
    same moment, ON CONFLICT still keeps a single copy and only the returned count is off.
    (RETURNING would name the inserted rows exactly but makes PostgreSQL ingest four times slower.)
    """
    inserted = 0
    new_events = _insert_for(session)(EVENTS).on_conflict_do_nothing(index_elements=["event_key"])
    for chunk in _chunks(records):
        known = set(session.scalars(
            select(EVENTS.c.event_key).where(EVENTS.c.event_key.in_([e.key for e in chunk]))))
        fresh: dict[str, EventRecord] = {}
        for event in chunk:
            if event.key not in known:
                fresh.setdefault(event.key, event)  # the first of duplicate keys wins, as in SQL
        if not fresh:
            continue
        session.execute(new_events, [
            {"event_key": e.key, "user_id": e.user_id, "article_id": e.article_id, "kind": e.kind,
             "ts": e.ts, "impression_id": e.impression_id, "source": e.source}
            for e in fresh.values()
        ])
        inserted += len(fresh)

        first_seen: dict[str, datetime] = {}
        first_referenced: dict[str, datetime] = {}
        for event in fresh.values():
            if event.user_id not in first_seen or event.ts < first_seen[event.user_id]:
                first_seen[event.user_id] = event.ts
            if event.article_id not in first_referenced or event.ts < first_referenced[event.article_id]:
                first_referenced[event.article_id] = event.ts
        _record_users(session, first_seen)
        _ensure_articles(session, first_referenced)
    return inserted


def _record_users(session: Session, first_seen: dict[str, datetime]) -> None:
    users = _insert_for(session)(USERS)
    session.execute(
        users.on_conflict_do_update(
            index_elements=["id"],
            set_={"first_seen_at": users.excluded.first_seen_at},
            where=or_(USERS.c.first_seen_at.is_(None), users.excluded.first_seen_at < USERS.c.first_seen_at),
        ),
        [{"id": user, "first_seen_at": ts} for user, ts in first_seen.items()],
    )


def _ensure_articles(session: Session, first_referenced: dict[str, datetime]) -> None:
    """Id-only rows for unknown articles; earlier publish times for articles timed by events."""
    now = _utcnow()
    stored = {row.id: row for row in session.execute(
        select(ARTICLES.c.id, ARTICLES.c.source, ARTICLES.c.published_at)
        .where(ARTICLES.c.id.in_(list(first_referenced))))}
    # Reading first keeps re-runs cheap: most referenced articles exist and need nothing.
    missing = [article_id for article_id in first_referenced if article_id not in stored]
    if missing:
        session.execute(
            _insert_for(session)(ARTICLES).on_conflict_do_nothing(index_elements=["id"]),
            [_article_row(ArticleRecord(id=article_id, published_at=first_referenced[article_id],
                                        source="ref", id_only=True), now)
             for article_id in missing],
        )
    earlier = [
        {"b_id": article_id, "b_ts": first_referenced[article_id]}
        for article_id, row in stored.items()
        if row.source in SOURCES_TIMED_BY_EVENTS
        and (row.published_at is None or first_referenced[article_id] < row.published_at)
    ]
    if earlier:
        # The WHERE repeats the test so a concurrent writer's earlier time is never raised.
        session.execute(
            update(ARTICLES)
            .where(ARTICLES.c.id == bindparam("b_id"))
            # Spelled as ORs: an IN list cannot be part of an executemany statement.
            .where(or_(*(ARTICLES.c.source == source for source in SOURCES_TIMED_BY_EVENTS)))
            .where(or_(ARTICLES.c.published_at.is_(None), ARTICLES.c.published_at > bindparam("b_ts")))
            .values(published_at=bindparam("b_ts"), updated_at=now),
            earlier,
        )


def _article_record(row: Any) -> ArticleRecord:
    return ArticleRecord(
        id=row.id,
        title=row.title,
        body=row.body,
        category=row.category,
        subcategory=row.subcategory,
        media_id=row.media_id,
        tags=tuple((tag, float(weight)) for tag, weight in row.tags or ()),
        entities=tuple(row.entities or ()),
        image_ref=row.image_ref,
        url=row.url,
        published_at=row.published_at,
        expires_at=row.expires_at,
        status=row.status,
        source=row.source,
        id_only=row.id_only,
    )


# Keys from ``low`` (inclusive) to ``high`` (exclusive); None leaves that end open.
KeyRange = tuple[str | None, str | None]
EVERY_KEY: KeyRange = (None, None)


def key_ranges(session: Session, column: ColumnElement[str], rows: int) -> list[KeyRange]:
    """Ranges that cut the values of ``column`` (a unique key) into runs of ``rows`` values, in
    order, together covering every key (the first and last are open, so keys stored meanwhile
    fall in one). The database numbers the keys (one index scan) and sends only the bounds."""
    numbered = select(column.label("key"), func.row_number().over(order_by=column).label("n")).subquery()
    bounds = list(session.scalars(
        select(numbered.c.key).where(numbered.c.n > 1, numbered.c.n % rows == 1).order_by(numbered.c.key)))
    edges = [None, *bounds, None]
    return list(zip(edges, edges[1:]))


def _in_range(query, column: ColumnElement[str], keys: KeyRange):
    low, high = keys
    if low is not None:
        query = query.where(column >= low)
    if high is not None:
        query = query.where(column < high)
    return query


def iter_articles(session: Session, batch: int = 5000, ids: KeyRange = EVERY_KEY) -> Iterator[ArticleRecord]:
    """Every article (with an id in ``ids``), by id, read a batch at a time (keyset pages: no
    cursor stays open)."""
    last_id: str | None = None
    while True:
        query = _in_range(select(ARTICLES), ARTICLES.c.id, ids).order_by(ARTICLES.c.id).limit(batch)
        if last_id is not None:
            query = query.where(ARTICLES.c.id > last_id)
        rows = session.execute(query).all()
        yield from (_article_record(row) for row in rows)
        if len(rows) < batch:
            return
        last_id = rows[-1].id


def articles_updated_after(session: Session, after: datetime, limit: int,
                           after_id: str = "") -> list[tuple[ArticleRecord, datetime]]:
    """Up to ``limit`` described articles whose (change time, id) comes after (``after``,
    ``after_id``), in that order, with their change times (what a serving process has not
    indexed yet). A keyset cursor: one upsert stamps all its rows with one change time, so the
    next page starts after the last (time, id) read, not after the time. ``after_id=""`` starts
    at ``after`` itself. Written as ``t >= :t AND (t > :t OR id > :id)``, the same on SQLite and
    PostgreSQL, and the ``updated_at`` index bounds it."""
    at, aid = ARTICLES.c.updated_at, ARTICLES.c.id
    query = (select(ARTICLES)
             .where(at >= after, or_(at > after, aid > after_id), ARTICLES.c.id_only.is_(False))
             .order_by(at, aid).limit(limit))
    return [(_article_record(row), row.updated_at) for row in session.execute(query)]


def _in_window(query, after: datetime | None, before: datetime | None):
    if after is not None:
        query = query.where(EVENTS.c.ts >= after)
    if before is not None:
        query = query.where(EVENTS.c.ts < before)
    return query


def click_sequences(session: Session, before: datetime | None = None,
                    users: KeyRange = EVERY_KEY) -> dict[str, list[tuple[str, datetime]]]:
    """Per user (of ``users``), the clicked article ids with their times, oldest first (events
    before ``before``)."""
    query = _in_window(
        _in_range(select(EVENTS.c.user_id, EVENTS.c.article_id, EVENTS.c.ts).where(EVENTS.c.kind == "click"),
                  EVENTS.c.user_id, users),
        None, before,
    ).order_by(EVENTS.c.user_id, EVENTS.c.ts, EVENTS.c.id)
    sequences: dict[str, list[tuple[str, datetime]]] = {}
    for user_id, article_id, ts in session.execute(query):
        sequences.setdefault(user_id, []).append((article_id, ts))
    return sequences


def clickers(session: Session, after: datetime | None = None, before: datetime | None = None) -> list[str]:
    """Users with a click in [after, before), sorted."""
    query = _in_window(select(EVENTS.c.user_id).where(EVENTS.c.kind == "click").distinct(), after, before)
    return sorted(session.scalars(query))


def iter_events(session: Session, after: datetime | None = None, before: datetime | None = None,
                batch: int = 10000, *, kind: str | None = None,
                news_since: tuple[datetime, int] | None = None) -> Iterator[EventRecord]:
    """Events with after <= ts < before, in (ts, id) order, read a keyset page at a time; of one
    ``kind`` when given. ``news_since`` (a time and an event id): only events at or after that
    time or stored after that id (a late file of older events), i.e. what a replay up to that
    time, which read up to that id, has not seen."""
    position: tuple[datetime, int] | None = None
    window = _in_window(select(EVENTS), after, before)
    if kind is not None:
        window = window.where(EVENTS.c.kind == kind)
    if news_since is not None:
        window = window.where(or_(EVENTS.c.ts >= news_since[0], EVENTS.c.id > news_since[1]))
    while True:
        query = window.order_by(EVENTS.c.ts, EVENTS.c.id).limit(batch)
        if position is not None:
            query = query.where(tuple_(EVENTS.c.ts, EVENTS.c.id) > tuple_(*position))
        rows = session.execute(query).all()
        for row in rows:
            yield EventRecord(key=row.event_key, user_id=row.user_id, article_id=row.article_id,
                              kind=row.kind, ts=row.ts, impression_id=row.impression_id, source=row.source)
        if len(rows) < batch:
            return
        position = (rows[-1].ts, rows[-1].id)


def last_event_id(session: Session) -> int:
    """The newest stored event's id (0 with none)."""
    return session.scalar(select(func.max(EVENTS.c.id))) or 0


def article_click_counts(session: Session, since: datetime | None,
                         before: datetime | None) -> dict[str, tuple[int, int]]:
    """(clicks, impressions) per article over since <= ts < before (None = unbounded)."""
    def count_of(kind: str):
        return func.sum(case((EVENTS.c.kind == kind, 1), else_=0))

    query = _in_window(
        select(EVENTS.c.article_id, count_of("click"), count_of("impression")).group_by(EVENTS.c.article_id),
        since, before,
    )
    return {article_id: (int(clicks), int(impressions))
            for article_id, clicks, impressions in session.execute(query)}
