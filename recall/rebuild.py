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
5. the serving build's own keys (``b:{version}:``, ``recall/buildkeys.py``): user vectors and
   memberships, recomputed as a click does (``UserStateUpdater``; DSSM user vectors come from
   the nightly only and wait for it), and the clusters' CF lists, from the last
   ``CF_HALF_LIVES`` half-lives of live clicks.

Redis whole but without complete keys of the build a process serves (a rollback or a fallback
to a build whose keys a Redis restart lost; the first start after upgrading to versioned keys)
rebuilds step 5 alone. A build whose folder was pruned is not rebuilt: its keys were dropped on
purpose, and the process serving it takes the active build at its next reload.

Meanwhile requests are served degraded (``fetch_context`` says so while a marker is missing).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from recall import buildkeys, sqlstore
from recall.clusterstore import ClusterStore
from recall.domain import to_unix
from recall.online import WHOLE_MARKER, OnlineStore
from recall.serving import ServingState
from recall.userstate import UserStateUpdater

log = logging.getLogger(__name__)

MARKER = WHOLE_MARKER  # under the prefix: who last made the online state whole, and when
LOCK = "meta:rebuilding"
LOCK_SECONDS = 900
BATCH = 5_000


def mark_whole(online: OnlineStore, by: str, replayed: tuple[datetime, int] | None = None) -> None:
    """Redis holds the whole online state. ``replayed``: it holds every event before that time
    and every one up to that event id (a replay's cutoff, and the last id stored when it read),
    so the next replay may take only what came since (``replayed_through``)."""
    mark = {"by": by, "at": time.time()}
    if replayed is not None:
        mark.update(through=replayed[0].isoformat(), last_event=replayed[1])
    online.r.set(online.k(MARKER), json.dumps(mark))


def replayed_through(online: OnlineStore) -> tuple[datetime, int] | None:
    """What the marker says Redis holds (``mark_whole``), or None: not whole, or not known."""
    raw = online.r.get(online.k(MARKER))
    mark = json.loads(raw) if raw else {}
    if "through" not in mark:
        return None
    return datetime.fromisoformat(mark["through"]), int(mark["last_event"])


def is_empty(online: OnlineStore) -> bool:
    """Redis answers but holds neither the marker nor a fresh list: it lost its state."""
    pipe = online.r.pipeline(transaction=False)
    pipe.exists(online.k(MARKER))
    pipe.exists(online.k("fresh"))
    marker, fresh = pipe.execute()
    if not marker and fresh:
        mark_whole(online, "adopted")  # state written before markers existed: keep it
    return not marker and not fresh


def lacks_build_keys(online: OnlineStore, state: ServingState) -> bool:
    """The build ``state`` serves has no complete keys in Redis, and its folder is still there
    (a pruned build's keys were dropped on purpose)."""
    return (state.version is not None and (state.directory is None or state.directory.is_dir())
            and not buildkeys.is_complete(online, state.version))


def rebuild_if_empty(service, sessions: sessionmaker[Session]) -> bool:
    """Rebuild when Redis lost its state, or the keys of the build this process serves, and no
    other process is at it; True if this one did."""
    online, state = service.background, service.state
    empty = is_empty(online)
    if not empty and not lacks_build_keys(online, state):
        return False
    token = uuid.uuid4().hex
    if not online.r.set(online.k(LOCK), token, nx=True, ex=LOCK_SECONDS):
        return False
    try:
        if empty:
            counts = rebuild(service, sessions)  # marks Redis whole
            log.info("online state rebuilt from SQL", extra={"fields": counts})
        else:
            counts = rebuild_build_keys(online, state, sessions, utc_now())
            log.info("keys of build %s rebuilt from SQL", state.version, extra={"fields": counts})
        return True
    finally:
        if online.r.get(online.k(LOCK)) == token.encode():
            online.r.delete(online.k(LOCK))


def utc_now() -> datetime:
    """Now as the events' naive UTC times, a millisecond ahead: every event stored so far is before it."""
    return datetime.now(UTC).replace(tzinfo=None) + timedelta(milliseconds=1)


def derive_user_keys(online: OnlineStore, state: ServingState, sessions: sessionmaker[Session],
                     users: list[str], memberships: dict[str, dict[str, list[str]]], until: datetime
                     ) -> dict[str, int]:
    """In build ``state``'s keys: the vectors and memberships of ``users`` recomputed as a click
    does, then the CF lists replayed from SQL up to ``until`` by everyone's memberships
    (``memberships``, overridden by the recomputed ones)."""
    memberships, updater = dict(memberships), UserStateUpdater(online, state)
    for start in range(0, len(users), 1_000):
        memberships.update(updater.refresh_users(users[start:start + 1_000]))
    settings = online.s
    cf = ClusterStore(online, state.version).replay_clicks(
        sessions, memberships, until, state.cutoff_ts, settings.cluster_cf_half_life_hours, settings.cluster_cf_cap)
    return {"users_refreshed": len(users), "cf_clicks": cf}


def rebuild_build_keys(online: OnlineStore, state: ServingState, sessions: sessionmaker[Session],
                       now: datetime, users: list[str] | None = None) -> dict[str, int]:
    """The keys of the build ``state`` serves, from SQL and the build, for every user who clicked
    before ``now`` (``users`` when the caller has them); leftovers of the version go first, and
    it is marked complete last."""
    buildkeys.drop(online, state.version)
    buildkeys.register(online, state.version, state.cutoff_ts)
    if users is None:
        with sessions() as session:
            users = sqlstore.clickers(session, before=now)
    counts = derive_user_keys(online, state, sessions, users, {}, now)
    buildkeys.mark_complete(online, state.version, "rebuild")
    return counts


def rebuild(service, sessions: sessionmaker[Session], now: datetime | None = None) -> dict[str, int]:
    pipeline = service.pipeline
    online, settings, catalog = service.background, service.settings, pipeline.state.catalog
    counts: dict[str, int] = {}
    with sessions() as session:  # the replay below applies these; every one is older than ``now``
        counts["outbox_cleared"] = len(sqlstore.claim_pending_events(session, 10**9))
        session.commit()
        last_event = sqlstore.last_event_id(session)
    now = now or utc_now()
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
    if pipeline.state.version is not None:
        counts.update(rebuild_build_keys(online, pipeline.state, sessions, now, users=list(clicks)))
    mark_whole(online, "rebuild", replayed=(now, last_event))
    return counts
