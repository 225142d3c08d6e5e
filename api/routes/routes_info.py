"""GET /v1/routes: every registered route, its config, and whether the active build serves it."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ServiceDep
from api.schemas import IndexInfo, RouteInfo, RoutesResponse
from recall.routes import ROUTES

router = APIRouter(tags=["routes"])


@router.get("/routes", response_model=RoutesResponse)
def list_routes(service: ServiceDep) -> RoutesResponse:
    # One read of each: a build or config swap mid-request must not mix two versions.
    state, configs, served = service.state, service.configs, service.routes
    routes = []
    for name, spec in ROUTES.items():
        config = configs[name]
        index = state.indexes.get(name) if spec.encoder else None
        routes.append(RouteInfo(
            name=name,
            kind=spec.kind,
            description=spec.description,
            enabled=config.enabled,
            weight=config.weight,
            quota=config.quota,
            params=config.params,
            available=name in served,
            index=None if index is None else IndexInfo(
                version=state.version,
                encoder_version=index.manifest.get("encoder_version"),
                count=len(index),  # live: the fast path adds articles between builds
                dim=index.dim,
                built_at=index.manifest.get("built_at"),
            ),
        ))
    return RoutesResponse(version=state.version, routes=routes)
