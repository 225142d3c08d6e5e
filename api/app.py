"""The app factory. Importing this module builds nothing: ``create_app`` makes the app, and its
lifespan opens SQL and Redis, loads the active build and starts the reload watcher and the
online upkeep (outbox drain, rebuild of an emptied Redis)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from importlib.metadata import version

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse

from api import admin, limits, reload, upkeep
from api.metrics import Metrics
from api.requestlog import RequestLogMiddleware
from api.routes import router
from recall.credentials import KeyCache
from recall.db import make_engine, make_sessionmaker, upgrade
from recall.online import OnlineStore, close_redis, connect_redis
from recall.routeconfig import load_route_configs
from recall.service import RecallService, UnknownRouteError
from recall.serving import ServingState
from recall.settings import Settings


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    engine = make_engine(settings.sqlalchemy_url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    # Connecting is lazy: a Redis that is down now only degrades requests, it never stops startup.
    redis_client = connect_redis(settings, serving=True)
    online = OnlineStore(redis_client, settings)
    background_client = connect_redis(settings)  # live snapshots and rebuilds: long timeouts, no breaker
    with sessions() as session:
        configs = load_route_configs(session)
    state = ServingState.load(settings)
    await asyncio.to_thread(state.warm)  # the first posted article is as fast as the next
    service = RecallService(online, state, configs, background=OnlineStore(background_client, settings))
    service.start()
    keys = KeyCache(sessions, ttl=settings.api_key_cache_seconds)

    app.state.engine, app.state.sessions = engine, sessions
    app.state.online, app.state.service, app.state.keys = online, service, keys
    app.state.metrics.track(service)
    tasks = [asyncio.create_task(reload.watch(service, sessions, keys)),
             asyncio.create_task(upkeep.keep_online_whole(service, sessions))]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        service.close()
        close_redis(redis_client)
        close_redis(background_client)
        engine.dispose()


async def unknown_route(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(title="newsrecall", version=version("newsrecall"), lifespan=lifespan,
                  summary="Multi-route candidate recall for news feeds")
    app.state.settings = settings or Settings()
    app.state.metrics = Metrics()
    limits.install(app)  # body cap, NUL-free /v1 ids, their documented errors (inside the request log)
    app.add_middleware(RequestLogMiddleware, observe=app.state.metrics.observe_request)
    app.add_exception_handler(UnknownRouteError, unknown_route)
    app.include_router(router)
    admin.install(app, app.state.settings)
    return app
