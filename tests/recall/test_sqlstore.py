"""recall.sqlstore against real SQLite and PostgreSQL (the ``engine`` fixture runs each test on both)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, select

from recall.domain import ArticleRecord, EventRecord
from recall.models import Article, Event, User
from recall.sqlstore import (
    article_click_counts,
    click_sequences,
    insert_events,
    iter_articles,
    iter_events,
    key_ranges,
    upsert_articles,
)

T0 = datetime(2026, 11, 20, 12, 0, 0)


def full_article(article_id: str = "a1", **changes) -> ArticleRecord:
    fields = dict(id=article_id, title="Late winner settles the derby", body="A header in the 94th minute.",
                  category="sports", subcategory="football", media_id="daily_sport",
                  tags=(("football", 1.0), ("derby", 0.5)),
                  entities=({"label": "Arsenal", "type": "O", "wikidata_id": "Q9617", "confidence": 1.0},),
                  image_ref="https://example.org/a1.jpg", url="https://example.org/a1",
                  published_at=T0, expires_at=T0 + timedelta(days=3), source="jsonl")
    return ArticleRecord(**{**fields, **changes})


def event(key: str, user: str, article: str, kind: str, ts: datetime,
          impression: str | None = None) -> EventRecord:
    return EventRecord(key=key, user_id=user, article_id=article, kind=kind, ts=ts, impression_id=impression,
                       source="test")


def articles_by_id(sessions) -> dict[str, ArticleRecord]:
    with sessions() as session:
        return {a.id: a for a in iter_articles(session)}


def test_upsert_inserts_then_reports_nothing_for_identical_data(sessions):
    with sessions.begin() as session:
        assert upsert_articles(session, [full_article("a1"), full_article("a2")]) == 2
    with sessions.begin() as session:
        assert upsert_articles(session, [full_article("a1"), full_article("a2")]) == 0
    stored = articles_by_id(sessions)
    assert stored["a1"] == full_article("a1")
    with sessions() as session:
        row = session.get(Article, "a1")
        assert len(row.content_hash) == 64 and row.updated_at is not None


def test_upsert_updates_changed_content_and_status(sessions):
    with sessions.begin() as session:
        upsert_articles(session, [full_article("a1"), full_article("a2")])
    with sessions.begin() as session:
        changed = upsert_articles(session, [full_article("a1", title="New title"),
                                            full_article("a2", status="hidden"),
                                            full_article("a3")])
    assert changed == 3
    stored = articles_by_id(sessions)
    assert stored["a1"].title == "New title"
    assert stored["a2"].status == "hidden"


def test_id_only_records_never_overwrite_a_full_article(sessions):
    with sessions.begin() as session:
        upsert_articles(session, [full_article("a1")])
    with sessions.begin() as session:
        changed = upsert_articles(session, [ArticleRecord(id="a1", source="ref", id_only=True),
                                            ArticleRecord(id="a2", source="ref", id_only=True)])
    assert changed == 1  # only the gap a2 was filled
    stored = articles_by_id(sessions)
    assert stored["a1"] == full_article("a1")
    assert stored["a2"].id_only and stored["a2"].title is None


def test_a_full_article_replaces_its_id_only_row(sessions):
    with sessions.begin() as session:
        insert_events(session, [event("e1", "u1", "a1", "click", T0)])
    with sessions.begin() as session:
        assert upsert_articles(session, [full_article("a1", published_at=None, source="mind")]) == 1
    stored = articles_by_id(sessions)["a1"]
    assert not stored.id_only and stored.title == full_article().title
    assert stored.published_at == T0  # the record had no publish time: the known one stays


def test_insert_events_counts_only_new_events_and_records_users(sessions):
    events = [event("e1", "u1", "a1", "impression", T0, "r1"),
              event("e2", "u1", "a1", "click", T0 + timedelta(seconds=5), "r1"),
              event("e3", "u2", "a2", "impression", T0 + timedelta(minutes=1))]
    with sessions.begin() as session:
        assert insert_events(session, events) == 3
    with sessions.begin() as session:
        earlier = event("e4", "u1", "a3", "click", T0 - timedelta(hours=1))
        assert insert_events(session, events + [earlier]) == 1
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 4
        first_seen = dict(session.execute(select(User.id, User.first_seen_at)).all())
    # u1's earliest event arrived in a later batch: first_seen_at moves back to it.
    assert first_seen == {"u1": T0 - timedelta(hours=1), "u2": T0 + timedelta(minutes=1)}


def test_insert_events_creates_id_only_articles_at_their_first_event(sessions):
    with sessions.begin() as session:
        insert_events(session, [event("e1", "u1", "a9", "impression", T0 + timedelta(hours=2)),
                                event("e2", "u2", "a9", "impression", T0)])
    with sessions.begin() as session:
        insert_events(session, [event("e3", "u3", "a9", "impression", T0 - timedelta(hours=3))])
    article = articles_by_id(sessions)["a9"]
    assert article.id_only and article.source == "ref" and article.status == "active"
    assert article.published_at == T0 - timedelta(hours=3)


def test_events_lower_publish_time_only_for_articles_without_one_of_their_own(sessions):
    with sessions.begin() as session:
        upsert_articles(session, [full_article("own"),
                                  full_article("mind", published_at=None, source="mind")])
        insert_events(session, [event("e1", "u1", "own", "click", T0 - timedelta(days=1)),
                                event("e2", "u1", "mind", "click", T0 - timedelta(days=1))])
    stored = articles_by_id(sessions)
    assert stored["own"].published_at == T0
    assert stored["mind"].published_at == T0 - timedelta(days=1)


def test_articles_then_events_and_events_then_articles_end_in_the_same_state(sessions):
    articles = [full_article("a1", published_at=None, source="mind")]
    events = [event("e1", "u1", "a1", "impression", T0), event("e2", "u1", "a2", "click", T0)]

    def state():
        return {a.id: a for a in articles_by_id(sessions).values()}

    with sessions.begin() as session:
        upsert_articles(session, articles)
        insert_events(session, events)
    articles_first = state()
    with sessions.begin() as session:
        for table in (Event, User, Article):
            session.execute(delete(table))
    with sessions.begin() as session:
        insert_events(session, events)
        upsert_articles(session, articles)
    assert state() == articles_first
    assert articles_first["a1"].published_at == T0 and articles_first["a2"].id_only


def test_iter_articles_streams_everything_in_batches(sessions):
    records = [full_article(f"a{n:03d}", tags=((f"t{n}", 1.0), ("common", 0.25))) for n in range(23)]
    with sessions.begin() as session:
        upsert_articles(session, records)
    with sessions() as session:
        streamed = list(iter_articles(session, batch=5))
    assert streamed == records
    assert streamed[4].tags == (("t4", 1.0), ("common", 0.25))


def test_key_ranges_cut_the_keys_into_runs_that_cover_them_all(sessions):
    records = [full_article(f"a{n:03d}") for n in range(23)]
    with sessions.begin() as session:
        upsert_articles(session, records)
    with sessions() as session:
        ranges = key_ranges(session, Article.__table__.c.id, 10)
        parts = [[a.id for a in iter_articles(session, batch=4, ids=ids)] for ids in ranges]
        assert key_ranges(session, Article.__table__.c.id, 23) == [(None, None)]
    assert ranges == [(None, "a010"), ("a010", "a020"), ("a020", None)]
    assert [len(part) for part in parts] == [10, 10, 3]
    assert sum(parts, []) == [r.id for r in records]


def test_iter_events_is_ordered_by_time_and_id_and_windowed(sessions):
    # Ties on ts are ordered by insertion id; batch=2 makes the keyset pages cut through ties.
    events = [event(f"e{n}", f"u{n % 3}", f"a{n % 4}", "impression", T0 + timedelta(minutes=n // 2))
              for n in range(9)]
    with sessions.begin() as session:
        insert_events(session, list(reversed(events[:4])) + events[4:])
    with sessions() as session:
        everything = list(iter_events(session, batch=2))
        window = list(iter_events(session, after=T0 + timedelta(minutes=1), before=T0 + timedelta(minutes=3),
                                  batch=2))
    assert [e.ts for e in everything] == sorted(e.ts for e in events)
    # e0..e3 were stored in reverse, so within each minute the later key has the smaller id.
    assert [e.key for e in everything] == ["e1", "e0", "e3", "e2", "e4", "e5", "e6", "e7", "e8"]
    assert [e.key for e in window] == ["e3", "e2", "e4", "e5"]
    assert everything[0] == events[1]


def test_click_sequences_are_per_user_oldest_first(sessions):
    with sessions.begin() as session:
        insert_events(session, [
            event("c2", "u1", "a2", "click", T0 + timedelta(minutes=2)),
            event("c1", "u1", "a1", "click", T0 + timedelta(minutes=1)),
            event("i1", "u1", "a3", "impression", T0),
            event("c3", "u2", "a1", "click", T0 + timedelta(minutes=5)),
        ])
    with sessions() as session:
        everything = click_sequences(session)
        early = click_sequences(session, before=T0 + timedelta(minutes=2))
    assert everything == {"u1": [("a1", T0 + timedelta(minutes=1)), ("a2", T0 + timedelta(minutes=2))],
                          "u2": [("a1", T0 + timedelta(minutes=5))]}
    assert early == {"u1": [("a1", T0 + timedelta(minutes=1))]}
    with sessions() as session:
        assert click_sequences(session, users=("u2", None)) == {"u2": everything["u2"]}
        assert click_sequences(session, users=(None, "u2")) == {"u1": everything["u1"]}


def test_article_click_counts_in_a_window(sessions):
    with sessions.begin() as session:
        insert_events(session, [
            event("i1", "u1", "a1", "impression", T0),
            event("c1", "u1", "a1", "click", T0 + timedelta(seconds=3)),
            event("i2", "u2", "a1", "impression", T0 + timedelta(hours=1)),
            event("i3", "u2", "a2", "impression", T0 + timedelta(hours=1)),
            event("c3", "u2", "a2", "click", T0 + timedelta(hours=5)),
        ])
    with sessions() as session:
        assert article_click_counts(session, None, None) == {"a1": (1, 2), "a2": (1, 1)}
        assert article_click_counts(session, T0 + timedelta(minutes=1), T0 + timedelta(hours=2)) == {
            "a1": (0, 1), "a2": (0, 1)}
        assert article_click_counts(session, T0 + timedelta(hours=2), None) == {"a2": (1, 0)}
