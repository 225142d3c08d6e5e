"""Keeping Redis whole behind the serving process: the outbox drain and the empty-Redis rebuild.

Every ``outbox_interval_seconds`` (in a worker thread, never on a request): if Redis came back
empty (its marker key is gone: restarted without persistence), one process rebuilds the online
state from SQL (``recall.rebuild``) while every process serves degraded, and so it does for the
keys of the build it serves when those alone are missing; then pending events of the outbox are
applied (``recall.outbox``). A failing tick logs and tries again.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.orm import Session, sessionmaker

from recall.outbox import drain
from recall.rebuild import rebuild_if_empty
from recall.service import RecallService

log = logging.getLogger(__name__)


def tick(service: RecallService, sessions: sessionmaker[Session]) -> None:
    if service.online.breaker_open():
        return  # nothing to do until Redis answers; the breaker's probe finds out when
    rebuild_if_empty(service, sessions)
    drain(service, sessions)


async def keep_online_whole(service: RecallService, sessions: sessionmaker[Session]) -> None:
    while True:
        await asyncio.sleep(service.settings.outbox_interval_seconds)
        try:
            await asyncio.to_thread(tick, service, sessions)
        except Exception:  # Redis or SQL blips: the next tick tries again
            log.exception("online upkeep failed")
