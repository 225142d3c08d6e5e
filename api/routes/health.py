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
    redis_up = online.ping()
    checks = {"sql": sql_answers(engine), "redis": redis_up, "build": version is not None,
              "online_state": redis_up and online.is_whole(version)}
    reasons = {
        "sql": "SQL database does not answer",
        "redis": "Redis does not answer (requests are served degraded from in-process snapshots)",
        "build": "no build loaded (serving fallback routes only)",
        "online_state": "Redis lost its state or the served build's keys; they are being rebuilt from SQL "
                        "(requests are served degraded)",
    }
    # Redis down says so once: its state cannot be judged then.
    failed = [reasons[name] for name, ok in checks.items() if not ok and (redis_up or name != "online_state")]
    if failed:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    state = service.state
    fell_back = state.requested is not None and state.requested != version
    return Readiness(ready=not failed, version=version, checks=checks, reasons=failed,
                     requested=state.requested if fell_back else None,
                     load_error=state.load_error if fell_back else None)
