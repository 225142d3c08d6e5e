"""GET /v1/recall/{user_id}: the fused candidates of every enabled route, with provenance."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import ServiceDep, SettingsDep
from api.metrics import MetricsDep
from api.schemas import (
    ID_MAX_LENGTH,
    Provenance,
    RecallCandidate,
    RecallResponse,
    RouteStats,
)

router = APIRouter(tags=["recall"])


def route_names(routes: str | None) -> list[str] | None:
    """``"tag2vec, hot"`` -> ``["tag2vec", "hot"]``; nothing named means every enabled route."""
    names = [name.strip() for name in (routes or "").split(",") if name.strip()]
    return names or None


@router.get("/recall/{user_id}", response_model=RecallResponse)
def recall(
    user_id: Annotated[str, Path(max_length=ID_MAX_LENGTH)],
    service: ServiceDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    n: Annotated[int | None, Query(ge=1, description="candidates wanted (default default_n); "
                                                     "values above max_n are capped")] = None,
    routes: Annotated[str | None, Query(description="comma-separated route names; "
                                                    "default: every enabled route")] = None,
    category: Annotated[str | None, Query(description="keep only articles of this category")] = None,
    explain: Annotated[bool, Query(description="add per-route stats and drop counts")] = False,
) -> RecallResponse:
    # Unknown users are not an error: they simply have no history, and fallback routes serve them.
    effective_n = min(settings.default_n if n is None else n, settings.max_n)
    result = service.recall(user_id, effective_n, routes=route_names(routes), category=category)
    metrics.observe_recall(result)
    response = RecallResponse(
        user_id=user_id,
        version=result.version,
        cold=result.cold,
        n=effective_n,
        candidates=[
            RecallCandidate(item_id=fused.item_id, score=fused.score,
                            routes=[Provenance(**c.as_dict()) for c in fused.routes])
            for fused in result.candidates
        ],
    )
    if explain:
        response.routes = {name: RouteStats(count=run.count, kept=run.kept, ms=run.ms, error=run.error)
                           for name, run in result.routes.items()}
        response.dropped = dict(result.dropped)
    return response
