"""The outbox: events stored while Redis was down are applied once it answers, exactly once,
on SQLite and PostgreSQL, with a real Redis (and a dead port for "down")."""

from __future__ import annotations

from datetime import datetime, timedelta

from recall import sqlstore
from recall.catalog import ItemCatalog, ItemMeta
from recall.domain import EventRecord, to_unix
from recall.online import OnlineStore, connect_redis
from recall.outbox import apply_or_keep, drain
from recall.service import RecallService
from recall.serving import ServingState

T0 = datetime(2026, 11, 30, 12, 0)


def clicks(user: str, n: int) -> list[EventRecord]:
    return [EventRecord(key=f"api:{user}:{i}", user_id=user, article_id=f"a{i}", kind="click",
                        ts=T0 + timedelta(minutes=i), source="api") for i in range(n)]


def service_on(settings, online: OnlineStore) -> RecallService:
    catalog = ItemCatalog({f"a{i}": ItemMeta(category="news") for i in range(10)})
    return RecallService(online, ServingState.in_memory(settings, catalog, {}))


def test_events_that_fail_online_wait_and_are_applied_once_redis_answers(settings, sessions, online):
    dead = settings.model_copy(update={"redis_url": "redis://127.0.0.1:6390/0"})
    down = service_on(dead, OnlineStore(connect_redis(dead, serving=True), dead))
    up = service_on(settings, online)
    events = clicks("u1", 5)
    with sessions() as session:
        sqlstore.insert_events(session, events)
        session.commit()
        assert apply_or_keep(down, session, events) is False
    with sessions() as session:
        assert {e.key for e in sqlstore.claim_pending_events(session, 100, keys=[events[0].key])} == {events[0].key}
        session.rollback()  # only looking

    assert drain(down, sessions) == 0  # still down: nothing is lost, nothing applied
    assert drain(up, sessions) == 5
    assert drain(up, sessions) == 0  # applied exactly once
    ctx = online.fetch_context("u1", now=to_unix(T0 + timedelta(hours=1)))
    assert set(ctx.recent_clicks) == {f"a{i}" for i in range(5)}


def test_two_drains_claim_disjoint_events(settings, sessions):
    events = clicks("u2", 30)
    with sessions() as session:
        sqlstore.insert_events(session, events)
        sqlstore.set_pending(session, [e.key for e in events])
        session.commit()
    with sessions() as first, sessions() as second:
        a = sqlstore.claim_pending_events(first, 20)
        first.commit()
        b = sqlstore.claim_pending_events(second, 20)
        second.commit()
    assert len(a) == 20 and len(b) == 10 and not {e.key for e in a} & {e.key for e in b}
    assert [e.ts for e in a] == sorted(e.ts for e in a)  # oldest first
