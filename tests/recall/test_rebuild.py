"""Redis restarted empty: one process rebuilds the online state from SQL and the build."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from recall import buildkeys, sqlstore
from recall.catalog import ItemCatalog, ItemMeta
from recall.domain import EventRecord, to_unix
from recall.rebuild import MARKER, rebuild_if_empty
from recall.service import RecallService
from recall.serving import ServingState


def test_an_empty_redis_is_rebuilt_from_sql_once(settings, sessions, online):
    now = datetime.now(UTC).replace(tzinfo=None)
    articles = {f"a{i}": ItemMeta(category="news", published=to_unix(now - timedelta(hours=5 + i)),
                                  tags=(("football", 1.0),)) for i in range(6)}
    service = RecallService(online, ServingState.in_memory(settings, ItemCatalog(articles), {}))
    events = [EventRecord(key=f"k{i}", user_id="reader", article_id=f"a{i}", kind="click",
                          ts=now - timedelta(hours=4 - i / 2), source="api") for i in range(6)]
    with sessions() as session:
        sqlstore.insert_events(session, events)
        sqlstore.set_pending(session, [events[-1].key])  # one still waiting in the outbox
        session.commit()

    online.flush_namespace()  # Redis restarted empty: no marker, no fresh list
    assert online.fetch_context("reader").degraded
    assert rebuild_if_empty(service, sessions) is True
    assert rebuild_if_empty(service, sessions) is False  # whole again: nothing to do

    ctx = online.fetch_context("reader")
    assert not ctx.degraded
    assert ctx.recent_clicks == [f"a{i}" for i in reversed(range(6))]
    assert ctx.profile.categories["news"] > 5  # six clicks, decayed over a few hours
    snapshot = service.pipeline.live.refresh(to_unix(now))
    clicked = {service.state.catalog.ids[r] for r in snapshot.window(6.0).order()}
    assert clicked == set(articles)  # hot counters replayed once each
    assert sorted(snapshot.window(6.0).clicks[snapshot.window(6.0).order()]) == [1.0] * 6
    with sessions() as session:  # the outbox's event was part of the replay, not applied again
        assert sqlstore.claim_pending_events(session, 10) == []


def test_state_written_before_markers_existed_is_adopted_not_rebuilt(settings, sessions, online):
    """An upgrade: the online state is adopted as it is; the served build's keys, which the
    unversioned layout did not have, are built (and only they)."""
    service = RecallService(online, ServingState.in_memory(settings, ItemCatalog(), {}))
    online.r.delete(online.k(MARKER))
    online.publish_articles([("old", 1.0)])
    assert rebuild_if_empty(service, sessions) is True
    assert online.r.exists(online.k(MARKER)) and online.r.zrange(online.k("fresh"), 0, -1) == [b"old"]
    assert buildkeys.is_complete(online, service.state.version)
    assert rebuild_if_empty(service, sessions) is False
