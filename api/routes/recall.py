"""GET /v1/recall/{user_id}: the fused candidates of every enabled route, with provenance.

The handler is a plain ``def`` (the one threadpool hop of the request: recall is CPU work) and
answers bytes serialised once by orjson; ``RecallResponse`` documents the shape in /docs.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Query, Response

from api.deps import ServiceDep, SettingsDep
from api.metrics import MetricsDep
from api.schemas import ID_MAX_LENGTH, RecallResponse
from recall.service import RecallResult

router = APIRouter(tags=["recall"])


def route_names(routes: str | None) -> list[str] | None:
    """``"tag2vec, hot"`` -> ``["tag2vec", "hot"]``; nothing named means every enabled route."""
    names = [name.strip() for name in (routes or "").split(",") if name.strip()]
    return names or None


def recall_body(result: RecallResult, n: int, explain: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "user_id": result.user_id,
        "version": result.version,
        "cold": result.cold,
        "n": n,
        "degraded": result.degraded,
        "candidates": result.candidates,  # dataclasses: orjson writes them as the schema's objects
    }
    body["routes"] = body["dropped"] = body["removed"] = None
    if explain:
        body["routes"] = {name: {"count": run.count, "kept": run.kept, "ms": run.ms, "error": run.error}
                          for name, run in result.routes.items()}
        body["dropped"] = dict(result.dropped)
        body["removed"] = [{"item_id": d.candidate.item_id, "route": d.candidate.route, "reason": d.reason}
                           for d in result.retrieved.dropped_items()]
    return body


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
    explain: Annotated[bool, Query(description="add per-route stats, drop counts and the removed "
                                               "candidates")] = False,
) -> Response:
    # Unknown users are not an error: they simply have no history, and fallback routes serve them.
    effective_n = min(settings.default_n if n is None else n, settings.max_n)
    result = service.recall(user_id, effective_n, routes=route_names(routes), category=category)
    metrics.observe_recall(result)
    return Response(orjson.dumps(recall_body(result, effective_n, explain)), media_type="application/json")
