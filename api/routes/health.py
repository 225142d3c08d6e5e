"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from api.deps import EngineDep, OnlineDep, ServiceDep
from api.schemas import Liveness, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Liveness)
def healthz() -> Liveness:
    """The process answers; nothing else is checked (a restart would not fix a dependency)."""
    return Liveness()


def sql_answers(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except SQLAlchemyError:
        return False


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
def readyz(response: Response, engine: EngineDep, online: OnlineDep, service: ServiceDep) -> Readiness:
    """Ready when SQL and Redis answer and a build is loaded. Not ready still serves: without a
    build the fallback routes answer; without Redis, recall returns what it can (200, never 500)."""
    version = service.state.version
    checks = {"sql": sql_answers(engine), "redis": online.ping(), "build": version is not None}
    reasons = {
        "sql": "SQL database does not answer",
        "redis": "Redis does not answer",
        "build": "no build loaded (serving fallback routes only)",
    }
    failed = [reasons[name] for name, ok in checks.items() if not ok]
    if failed:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(ready=not failed, version=version, checks=checks, reasons=failed)
