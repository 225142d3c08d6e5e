"""The user inspector: why a user gets what they get, route by route.

All served routes run once (``RecallService.retrieve``: context, routes, scorer, filters); the
merger then fuses the routes ticked in the page's form, so switching a route off shows the
fused list without it at the cost of one merge.
"""

from __future__ import annotations

from typing import Annotated

import redis
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from api.admin.templating import IdPath, search_box, templates
from api.deps import ServiceDep, SettingsDep
from recall.clusterstore import ClusterStore
from recall.online import ProfileSummary
from recall.routes import ROUTES
from recall.service import RecallService

router = APIRouter()

# Candidates shown per route column; the fused list shows ``n`` (the page's form).
COLUMN_LENGTH = 20


@router.get("/users", response_class=HTMLResponse)
def find_user(request: Request, user_id: str | None = None) -> Response:
    return search_box(request, user_id, "user_page", "user_id", "user_search.html")


def profile_and_clusters(service: RecallService, user_id: str, version: str | None,
                         ) -> tuple[ProfileSummary | None, dict[str, list[str]] | None]:
    """The profile, and the memberships in build ``version`` (the one whose routes the page
    shows); None for both when Redis does not answer: the routes still show what they can."""
    try:
        return service.online.user_profile(user_id), ClusterStore(service.online, version).memberships(user_id)
    except redis.RedisError:
        return None, None


# ":path": the rest of the path is the id, so an id with a "/" (quoted %2F, which the server
# decodes before routing) has a page too.
@router.get("/users/{user_id:path}", response_class=HTMLResponse)
def user_page(
    request: Request,
    user_id: IdPath,
    service: ServiceDep,
    settings: SettingsDep,
    route: Annotated[list[str] | None, Query(description="routes fused; default: the enabled ones")] = None,
    picked: Annotated[bool, Query(description="the form was sent: no route ticked means none")] = False,
    n: Annotated[int, Query(ge=1, description="fused candidates shown; capped at max_n")] = 50,
) -> HTMLResponse:
    n = min(n, settings.max_n)
    pipeline = service.pipeline  # one snapshot, as a request takes it
    served, configs = pipeline.routes, pipeline.configs
    retrieved = service.retrieve(pipeline, user_id, served, configs)
    if picked:
        fused_routes = [r for r in served if r in (route or ())]
    else:
        fused_routes = [r for r in served if configs[r].enabled]
    profile, memberships = profile_and_clusters(service, user_id, pipeline.state.version)
    fused, merge_drops = service.merger.merge({r: retrieved.per_route[r] for r in fused_routes}, configs, n,
                                              retrieved.ids)
    return templates.TemplateResponse(request, "user.html", {
        "user_id": user_id,
        "clicks": list(zip(retrieved.recent_clicks, retrieved.click_times)),
        "profile": profile,
        "memberships": memberships,
        "columns": [(name, ROUTES[name], configs[name], retrieved.runs[name],
                     retrieved.listing(name, COLUMN_LENGTH)) for name in served],
        "fused_routes": fused_routes,
        "fused": fused,
        "dropped": retrieved.dropped + merge_drops,
        "cold": retrieved.cold,
        "n": n,
        "catalog": pipeline.state.catalog,
    })
