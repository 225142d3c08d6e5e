"""POST /v1/events: store impressions and clicks in SQL and apply them to online state at once.

SQL is the record: events are committed there first, so a Redis outage loses nothing: what could
not be applied waits in the outbox (``recall/outbox.py``) and is applied when Redis answers. Redis gets them through ``RecallService.record_events``,
the same path the evaluation replay uses, so a click changes the next recall immediately: recent
clicks, hot counters, the user's profile, vectors and clusters, and their clusters' CF lists.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import ServiceDep, SessionDep
from api.schemas import EventBatch, EventIn, EventsAccepted
from recall import sqlstore
from recall.domain import EventRecord
from recall.outbox import apply_or_keep

log = logging.getLogger(__name__)

router = APIRouter(tags=["events"])


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def naive_utc(ts: datetime) -> datetime:
    """The project stores naive UTC; ISO times without an offset already are."""
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts


def to_record(event: EventIn, received_at: datetime, namespace: str) -> EventRecord:
    """``namespace``: the caller's API key id. Event ids are the caller's own: another caller
    reusing an id stores its own event."""
    # An event cannot happen after it arrives: a client clock running ahead would otherwise hide
    # the click from recall (recent clicks are read up to "now") until that time came.
    ts = min(naive_utc(event.ts), received_at) if event.ts else received_at
    content = "\x1f".join([event.user_id, event.article_id, event.kind, ts.isoformat(),
                            event.impression_id or ""])
    key = event.id or hashlib.sha1(content.encode()).hexdigest()
    # Namespaced by caller, and so that a key given to the API never collides with an ingested
    # source's event keys.
    return EventRecord(key=f"api:{namespace}:{key}", user_id=event.user_id, article_id=event.article_id,
                       kind=event.kind, ts=ts, impression_id=event.impression_id, source="api")


def not_yet_stored(session: Session, records: Sequence[EventRecord]) -> list[EventRecord]:
    """The first event of each key not already in SQL.

    Only these go to Redis: hot counters are increments, so a retried batch must not count twice.
    """
    known = set(session.scalars(select(sqlstore.EVENTS.c.event_key)
                                .where(sqlstore.EVENTS.c.event_key.in_([r.key for r in records]))))
    first_of_key: dict[str, EventRecord] = {}
    for record in records:
        if record.key not in known:
            first_of_key.setdefault(record.key, record)
    return list(first_of_key.values())


@router.post("/events", response_model=EventsAccepted)
def post_events(batch: EventBatch, request: Request, session: SessionDep, service: ServiceDep) -> EventsAccepted:
    """``online`` is true when every event of the batch is applied to Redis: new ones now, and
    retried ones that an outage had left in the outbox are applied now too."""
    received_at = utcnow()
    namespace = getattr(request.state, "api_key_id", None) or "open"
    records = [to_record(event, received_at, namespace) for event in batch.events]
    new = not_yet_stored(session, records)
    stored = sqlstore.insert_events(session, new)
    session.commit()
    # Retried events an outage left in the outbox: claimed (so no drain applies them meanwhile)
    # and applied with this batch.
    retried = list({r.key for r in records} - {e.key for e in new})
    waiting = sqlstore.claim_pending_events(session, len(retried), keys=retried) if retried else []
    session.commit()
    applied = apply_or_keep(service, session, [*new, *waiting])
    return EventsAccepted(accepted=len(records), stored=stored, online=applied)
