"""Dependencies handlers declare by type: what the lifespan built, read from ``app.state``.

They are ``async def``: FastAPI runs a plain ``def`` dependency in its threadpool, one hop per
dependency per request, for what is an attribute read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from recall.online import OnlineStore
from recall.service import RecallService
from recall.settings import Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


async def get_online(request: Request) -> OnlineStore:
    return request.app.state.online


async def get_service(request: Request) -> RecallService:
    return request.app.state.service


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
SessionDep = Annotated[Session, Depends(get_session)]
OnlineDep = Annotated[OnlineStore, Depends(get_online)]
ServiceDep = Annotated[RecallService, Depends(get_service)]
