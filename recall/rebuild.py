"""Rebuilding the online state from SQL when Redis came back empty.

Redis here keeps nothing on disk: restarted, it is empty, and recent clicks, seen sets, hot
counters, profiles, user vectors, memberships and the clusters' CF lists are gone. The nightly
job (and this rebuild) leave a marker key; a serving process that finds Redis answering without
it (and without a fresh list: an empty namespace, not one written before markers existed)
rebuilds, under a Redis lock so one process does it, from SQL and the serving build:

1. the outbox is emptied (the replay below includes its events);
2. the fresh list, from the build's catalog (live articles, newest first);
3. recent clicks, seen sets, hot counters and item CF's co-click lists, by replaying the
   events of the seen/hot horizon (``record_events``);
4. profiles, from every click (the same Lua script as online);
5. user vectors and memberships, recomputed as a click does (``UserStateUpdater``); DSSM user
   vectors come from the nightly only and wait for it;
6. the clusters' CF lists, from the last ``CF_HALF_LIVES`` half-lives of live clicks

Meanwhile requests are served degraded (``fetch_context`` says so while the marker is missing).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from recall import sqlstore
from recall.clusterstore import ClusterStore
from recall.domain import to_unix
from recall.online import WHOLE_MARKER, OnlineStore
from recall.userstate import UserStateUpdater

log = logging.getLogger(__name__)

MARKER = WHOLE_MARKER  # under the prefix: who last made the online state whole, and when
LOCK = "meta:rebuilding"
LOCK_SECONDS = 900
BATCH = 5_000


def mark_whole(online: OnlineStore, by: str) -> None:
    online.r.set(online.k(MARKER), json.dumps({"by": by, "at": time.time()}))


def is_empty(online: OnlineStore) -> bool:
    """Redis answers but holds neither the marker nor a fresh list: it lost its state."""
    pipe = online.r.pipeline(transaction=False)
    pipe.exists(online.k(MARKER))
    pipe.exists(online.k("fresh"))
    marker, fresh = pipe.execute()
    if not marker and fresh:
        mark_whole(online, "adopted")  # state written before markers existed: keep it
    return not marker and not fresh


def rebuild_if_empty(service, sessions: sessionmaker[Session]) -> bool:
    """Rebuild when Redis lost its state and no other process is at it; True if this one did."""
    online = service.background
    if not is_empty(online):
        return False
    token = uuid.uuid4().hex
    if not online.r.set(online.k(LOCK), token, nx=True, ex=LOCK_SECONDS):
        return False
    try:
        counts = rebuild(service, sessions)
        mark_whole(online, "rebuild")
        log.info("online state rebuilt from SQL", extra={"fields": counts})
        return True
    finally:
        if online.r.get(online.k(LOCK)) == token.encode():
            online.r.delete(online.k(LOCK))


def rebuild(service, sessions: sessionmaker[Session], now: datetime | None = None) -> dict[str, int]:
    pipeline = service.pipeline
    online, settings, catalog = service.background, service.settings, pipeline.state.catalog
    counts: dict[str, int] = {}
    with sessions() as session:  # the replay below applies these; every one is older than ``now``
        counts["outbox_cleared"] = len(sqlstore.claim_pending_events(session, 10**9))
        session.commit()
    now = now or datetime.now(UTC).replace(tzinfo=None) + timedelta(milliseconds=1)
    now_ts = to_unix(now)

    live = ((catalog.published <= now_ts) & (catalog.expires > now_ts) & ~catalog.hidden
            & np.isfinite(catalog.published))
    fresh = [(catalog.ids[r], float(catalog.published[r])) for r in np.flatnonzero(live)]
    online.replace_fresh(fresh)
    pipeline.live.publish(fresh)
    counts["fresh"] = len(fresh)

    replayed = 0
    with sessions() as session:
        batch = []
        for event in sqlstore.iter_events(session, after=now - timedelta(seconds=settings.replay_horizon_seconds),
                                          before=now):
            batch.append(event)
            if len(batch) >= BATCH:
                replayed += online.record_events(batch)
                batch = []
        replayed += online.record_events(batch)
        clicks = sqlstore.click_sequences(session, before=now)
    counts["events_replayed"] = replayed

    counts["profiles"] = online.apply_clicks_to_profiles(
        (user, to_unix(ts), meta) for user, seq in clicks.items() for article, ts in seq
        if (meta := catalog.get(article)) is not None)
    memberships: dict[str, dict[str, list[str]]] = {}
    users, updater = list(clicks), UserStateUpdater(online, pipeline.state)
    for start in range(0, len(users), 1_000):
        memberships.update(updater.refresh_users(users[start:start + 1_000]))
    counts["users"] = len(users)

    counts["cf_clicks"] = ClusterStore(online).replay_clicks(
        sessions, memberships, now, pipeline.state.cutoff_ts, settings.cluster_cf_half_life_hours,
        settings.cluster_cf_cap)
    return counts
