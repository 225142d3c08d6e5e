"""The outbox: events the API stored in SQL but could not apply to Redis, applied once it answers.

``POST /v1/events`` commits events to SQL first, then applies them online. When Redis does not
answer, the events are flagged ``pending_online`` and the response says ``online: false``; every
serving process drains the flagged events in time order on its reload tick (and a retry of the
same event applies it at once). Claiming clears the flag in the same statement that reads the
events, so two processes never apply one event twice; a failed apply puts them back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.orm import Session, sessionmaker

from recall import sqlstore
from recall.domain import EventRecord
from recall.online import OnlineStoreError

log = logging.getLogger(__name__)


def apply_or_keep(service, session: Session, events: Sequence[EventRecord]) -> bool:
    """Apply stored events online; on failure flag them for the outbox (committed). Returns
    whether they were applied."""
    if not events:
        return True
    try:
        service.record_events(list(events))
        return True
    except OnlineStoreError as exc:
        log.warning("events stored in SQL, applied online when Redis answers: %s", exc)
        sqlstore.set_pending(session, [e.key for e in events])
        session.commit()
        return False


def drain(service, sessions: sessionmaker[Session], batch: int = 1000, most: int = 100_000) -> int:
    """Apply pending events, oldest first, until none is left, Redis fails, or ``most`` were
    applied (the next tick goes on). Returns how many were applied."""
    applied = 0
    while applied < most:
        with sessions() as session:
            events = sqlstore.claim_pending_events(session, batch)
            session.commit()
            if not events:
                break
            if not apply_or_keep(service, session, events):
                break
        applied += len(events)
    if applied:
        log.info("outbox: %d events applied online", applied)
    return applied
