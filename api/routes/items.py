"""GET /v1/items/{item_id}/similar: an article's neighbours in one item-to-item route."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from api.deps import ServiceDep, SettingsDep
from api.schemas import ID_MAX_LENGTH, ErrorMessage, Neighbour, SimilarResponse

router = APIRouter(tags=["items"])


@router.get("/items/{item_id}/similar", response_model=SimilarResponse, responses={
    404: {"model": ErrorMessage, "description": "the item is not in the active build (nor posted since)"},
    503: {"model": ErrorMessage, "description": "the route has no index in the active build"},
})
def similar(
    item_id: Annotated[str, Path(max_length=ID_MAX_LENGTH)],
    route: Annotated[str, Query(description="an item-to-item route, e.g. tag2vec")],
    service: ServiceDep,
    settings: SettingsDep,
    n: Annotated[int, Query(ge=1, description="neighbours wanted; above similar_max_n, capped")] = 50,
) -> SimilarResponse:
    effective_n = min(n, settings.similar_max_n)
    neighbours = service.similar(item_id, route, effective_n)  # UnknownRouteError -> 422 (app.py)
    if not neighbours:
        # An empty list is a fine answer for a known article; say why when it is not one.
        if route not in service.routes:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                                f"route {route!r} has no index in the active build")
        if item_id not in service.state.catalog:
            raise HTTPException(status.HTTP_404_NOT_FOUND,
                                f"unknown item {item_id!r}: not in the active build")
    return SimilarResponse(
        item_id=item_id,
        route=route,
        version=service.state.version,
        n=effective_n,
        neighbours=[Neighbour(item_id=c.item_id, score=c.score) for c in neighbours],
    )
