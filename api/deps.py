"""Dependencies handlers declare by type: what the lifespan built, read from ``app.state``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from recall.online import OnlineStore
from recall.service import RecallService
from recall.settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def get_online(request: Request) -> OnlineStore:
    return request.app.state.online


def get_service(request: Request) -> RecallService:
    return request.app.state.service


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
SessionDep = Annotated[Session, Depends(get_session)]
OnlineDep = Annotated[OnlineStore, Depends(get_online)]
ServiceDep = Annotated[RecallService, Depends(get_service)]
