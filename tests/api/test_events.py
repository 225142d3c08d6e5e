"""POST /v1/events: stored in SQL, applied to Redis at once, never a 500 when Redis is down."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from recall.catalog import ItemCatalog
from recall.live import LiveState
from recall.models import Event
from recall.online import OnlineStore, connect_redis
from tests.api.conftest import key_headers


def stored_events(engine, user: str) -> list[Event]:
    with Session(engine) as session:
        return list(session.scalars(select(Event).where(Event.user_id == user).order_by(Event.ts)))


@pytest.fixture
def online_view(built) -> Iterator[OnlineStore]:
    """A reader of the app's Redis namespace, with caches of its own."""
    client = connect_redis(built.settings)
    yield OnlineStore(client, built.settings)
    client.close()


def test_events_go_to_sql_and_to_online_state(client, built, user_id, online_view):
    clicked_at = datetime.now(UTC).replace(tzinfo=None, microsecond=0) - timedelta(minutes=5)
    response = client.post("/v1/events", json={"events": [
        {"user_id": user_id, "article_id": "a10", "kind": "impression",
         "ts": (clicked_at - timedelta(seconds=30)).isoformat() + "Z", "impression_id": "imp-1"},
        {"user_id": user_id, "article_id": "a10", "kind": "click",
         "ts": clicked_at.replace(tzinfo=UTC).timestamp()},
    ]})
    assert response.status_code == 200
    assert response.json() == {"accepted": 2, "stored": 2, "online": True}

    rows = stored_events(built.engine, user_id)
    assert [(r.kind, r.article_id, r.source) for r in rows] == [
        ("impression", "a10", "api"), ("click", "a10", "api")]
    assert rows[0].impression_id == "imp-1" and rows[0].ts == clicked_at - timedelta(seconds=30)
    assert rows[1].ts == clicked_at  # unix seconds, stored as naive UTC
    assert online_view.fetch_context(user_id).recent_clicks == ["a10"]


def test_a_retried_event_is_stored_and_counted_once(client, built, user_id, online_view):
    article = f"api-article-{user_id}"  # new to the world: its hot count is ours alone
    batch = {"events": [
        {"user_id": user_id, "article_id": article, "kind": "click", "id": f"click-{user_id}"}]}
    assert client.post("/v1/events", json=batch).json() == {"accepted": 1, "stored": 1, "online": True}
    assert client.post("/v1/events", json=batch).json() == {"accepted": 1, "stored": 0, "online": True}
    # Without an id, the content is the key: the same event twice in one batch is one event.
    ts = time.time() - 60
    twice = {"events": [{"user_id": user_id, "article_id": article, "kind": "impression", "ts": ts}] * 2}
    assert client.post("/v1/events", json=twice).json() == {"accepted": 2, "stored": 1, "online": True}

    assert len(stored_events(built.engine, user_id)) == 2
    catalog = ItemCatalog()
    stats = LiveState(online_view, catalog, [1.0]).refresh(time.time()).window(1.0)
    (row,) = catalog.rows([article])
    assert stats.clicks[row] == 1 and stats.impressions[row] == 1


def test_a_time_ahead_of_the_server_clock_counts_as_now(client, built, user_id):
    ahead = datetime.now(UTC) + timedelta(days=1)
    client.post("/v1/events", json={"events": [
        {"user_id": user_id, "article_id": "a11", "kind": "click", "ts": ahead.isoformat()}]})
    (row,) = stored_events(built.engine, user_id)
    assert row.ts <= datetime.now(UTC).replace(tzinfo=None)
    assert client.get(f"/v1/recall/{user_id}").json()["cold"] is False


def event(user: str, **changes) -> dict:
    return {"user_id": user, "article_id": "a12", "kind": "click", **changes}


@pytest.mark.parametrize("body, where", [
    (lambda u: {"events": [event(u, kind="like")]}, ["body", "events", 0, "kind"]),
    (lambda u: {"events": [event(u, ts="yesterday")]}, ["body", "events", 0, "ts"]),
    (lambda u: {"events": [event(u, ts="2026-13-40T25:00:00")]}, ["body", "events", 0, "ts"]),
    (lambda u: {"events": [{"user_id": u, "kind": "click"}]}, ["body", "events", 0, "article_id"]),
    (lambda u: {"events": []}, ["body", "events"]),
    (lambda u: {"events": [event(u)] * 1001}, ["body", "events"]),
])
def test_invalid_batches_are_422_and_store_nothing(client, built, user_id, body, where):
    response = client.post("/v1/events", json=body(user_id))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == where
    assert stored_events(built.engine, user_id) == []


def test_redis_down_still_stores_in_sql(redis_down_client, built, user_id):
    batch = {"events": [event(user_id), event(user_id, kind="impression")]}
    response = redis_down_client.post("/v1/events", json=batch)
    assert response.status_code == 200
    assert response.json() == {"accepted": 2, "stored": 2, "online": False}
    assert len(stored_events(built.engine, user_id)) == 2



def test_an_event_stored_while_redis_was_down_is_applied_by_its_retry(redis_down_client, client, built, user_id,
                                                                     online_view):
    """The retry contract: send an id; a retry answers ``online`` truthfully and applies what an
    outage left in the outbox (before the fix, it answered online: true and never applied it)."""
    batch = {"events": [event(user_id, id=f"retry-{user_id}")]}
    # The same API key for both apps: an event id is its caller's.
    headers = {"Authorization": redis_down_client.headers["Authorization"]}
    assert redis_down_client.post("/v1/events", json=batch).json()["online"] is False
    assert online_view.fetch_context(user_id).recent_clicks == []
    assert client.post("/v1/events", json=batch, headers=headers).json() == {"accepted": 1, "stored": 0, "online": True}
    assert online_view.fetch_context(user_id).recent_clicks == ["a12"]


def test_event_ids_are_scoped_by_api_key(client, built, user_id):
    other = key_headers(built.engine)
    batch = {"events": [event(user_id, id="shared-id")]}
    assert client.post("/v1/events", json=batch).json()["stored"] == 1
    # Another caller that happens to use the same id stores its own event.
    assert client.post("/v1/events", json=batch, headers=other).json()["stored"] == 1
    assert len(stored_events(built.engine, user_id)) == 2
