"""The routes page: every route's index and config; editors change configs here, audited.

A change goes through ``update_route_config`` (which writes who changed what, old -> new) and is
swapped into this process' service at once; other workers pick it up within
``reload_interval_seconds`` (api/reload.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Path, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import func, select

from api.admin.editors import EditorDep
from api.admin.templating import Page, flash, templates
from api.deps import ServiceDep, SessionDep, SettingsDep
from recall.index import VectorIndex
from recall.models import RouteConfigAudit
from recall.routeconfig import load_route_configs, update_route_config
from recall.routes import ROUTES
from recall.routes.base import RouteConfig, RouteSpec

router = APIRouter()

FLOOR = "cosine_floor"


@dataclass(frozen=True, slots=True)
class RouteRow:
    spec: RouteSpec
    config: RouteConfig
    served: bool
    index: VectorIndex | None


def flat_config(config: dict[str, Any] | None) -> dict[str, Any]:
    """An audit row's config with its params beside the other fields."""
    config = dict(config or {})
    return {**config.pop("params", {}), **config}


def config_changes(old: dict[str, Any] | None, new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(field, old, new) for every field an audit row changed."""
    before, after = flat_config(old), flat_config(new)
    return [(name, before.get(name), value) for name, value in after.items() if before.get(name) != value]


@router.get("/routes", response_class=HTMLResponse)
def routes_page(request: Request, session: SessionDep, service: ServiceDep, settings: SettingsDep,
                page: Annotated[int, Query(ge=1)] = 1) -> HTMLResponse:
    state, configs, served = service.state, service.configs, service.routes
    rows = [RouteRow(spec, configs[name], name in served, state.indexes.get(name) if spec.encoder else None)
            for name, spec in ROUTES.items()]
    audit_page = Page.of(page, settings.admin_page_size,
                         session.scalar(select(func.count()).select_from(RouteConfigAudit)))
    audit = session.scalars(select(RouteConfigAudit)
                            .order_by(RouteConfigAudit.changed_at.desc(), RouteConfigAudit.id.desc())
                            .offset(audit_page.offset).limit(audit_page.size))
    return templates.TemplateResponse(request, "routes.html", {
        "rows": rows,
        "version": state.version,
        "audit": [(entry, config_changes(entry.old, entry.new)) for entry in audit],
        "audit_page": audit_page,
        "floor": FLOOR,
    })


@router.post("/routes/{route}")
def change_route(
    route: Annotated[str, Path()],
    request: Request,
    session: SessionDep,
    service: ServiceDep,
    editor: EditorDep,
    weight: Annotated[float, Form(ge=0)],
    quota: Annotated[int, Form(ge=0)],
    enabled: Annotated[bool, Form()] = False,  # an unticked checkbox sends nothing
    cosine_floor: Annotated[float | None, Form(ge=-1, le=1)] = None,
) -> RedirectResponse:
    if route not in ROUTES:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown route {route!r}")
    current = load_route_configs(session)[route]
    changes: dict[str, Any] = {}
    if enabled != current.enabled:
        changes["enabled"] = enabled
    if weight != current.weight:
        changes["weight"] = weight
    if quota != current.quota:
        changes["quota"] = quota
    if cosine_floor is not None and FLOOR in current.params and cosine_floor != current.params[FLOOR]:
        changes["params"] = {FLOOR: cosine_floor}
    if changes:
        update_route_config(session, route, changed_by=editor, **changes)
        service.set_configs(load_route_configs(session))
        flash(request, f"{route}: {', '.join(sorted(changes))} changed")
    else:
        flash(request, f"{route}: nothing changed")
    return RedirectResponse(request.url_for("routes_page"), status.HTTP_303_SEE_OTHER)
