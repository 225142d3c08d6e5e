"""Hot reload: a serving process picks up newly published builds and edited route configs.

The nightly job flips ``builds/ACTIVE``; editors write ``route_configs`` in SQL; another worker
stores a posted article. Every ``reload_interval_seconds`` the watcher compares these with what
the service holds and takes in what changed (a new build, new configs, articles SQL has that
the live indexes lack), so none of them needs a restart. Loading happens in a worker thread: a build's indexes
take a while to read and requests keep being served from the old one meanwhile.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.orm import Session, sessionmaker

from recall.credentials import KeyCache
from recall.fastpath import catch_up
from recall.index import BuildStore
from recall.routeconfig import load_route_configs
from recall.service import RecallService
from recall.serving import ServingState

log = logging.getLogger(__name__)


def refresh(service: RecallService, sessions: sessionmaker[Session], keys: KeyCache | None = None) -> None:
    """Swap in the active build if it changed, and the route configs if they changed; re-check
    cached API keys (a revoked key stops working here) and record their use.

    A build that cannot be served (ACTIVE names a missing or corrupt one) never replaces the one
    loaded: the failure is logged, and the state records the version asked for and why it is
    not served (``requested``, ``load_error``). It is tried again once ACTIVE changes."""
    store = BuildStore(service.settings.builds_dir)
    active = store.active_version()
    current = service.state
    if active is not None and active != (current.requested or current.version):
        try:
            state = ServingState.load(service.settings, store.root / active, fallback=False)
        except Exception as exc:  # noqa: BLE001 - whatever is wrong with it, keep serving
            current.requested, current.load_error = active, str(exc)
            log.error("build %s cannot be served; still serving build %s: %s", active, current.version, exc)
        else:
            service.set_state(state)
            log.info("serving build %s", state.version)
    with sessions() as session:
        configs = load_route_configs(session)
    if configs != service.configs:
        service.set_configs(configs)
        log.info("route configs reloaded")
    added = catch_up(service.pipeline, service.online, sessions)
    if added:
        log.info("indexed %d articles stored since the build", added)
    if keys is not None:
        keys.refresh()


async def watch(service: RecallService, sessions: sessionmaker[Session], keys: KeyCache | None = None) -> None:
    """Run ``refresh`` forever; a failed refresh keeps serving what is loaded and tries again."""
    while True:
        await asyncio.sleep(service.settings.reload_interval_seconds)
        try:
            await asyncio.to_thread(refresh, service, sessions, keys)
        except Exception:  # a broken build or a SQL blip must not stop future reloads
            log.exception("reload failed; still serving build %s", service.state.version)
