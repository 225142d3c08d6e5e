"""The clusters page: each clustering scheme's clusters, biggest first, a page at a time.

Everything comes from ``ClusterStore`` (Redis, written by the nightly job for each build): the
keys of the build this process serves, so the page describes the clusters its routes use. A page
of a scheme with thousands of clusters reads only that page's profiles and lists.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import HTMLResponse

from api.admin.templating import IdPath, IdQuery, Page, templates
from api.deps import ServiceDep, SettingsDep
from recall.clusterstore import ClusterStore

router = APIRouter()

# Most clicked articles shown per cluster in the list, and on a cluster's own page.
LIST_ITEMS, CLUSTER_ITEMS = 5, 30


@router.get("/clusters", response_class=HTMLResponse)
def clusters_page(request: Request, service: ServiceDep, settings: SettingsDep,
                  scheme: IdQuery = None, page: Annotated[int, Query(ge=1)] = 1) -> HTMLResponse:
    store = ClusterStore(service.online, service.state.version)
    schemes = store.schemes()
    chosen = next((s for s in schemes if s.name == scheme), schemes[0] if schemes else None)
    size = settings.admin_page_size
    clusters, top_items, cluster_page = [], {}, Page(1, size, 0)
    if chosen is not None:
        # The store counts while it reads the page: a page past the end is simply empty.
        total, clusters = store.clusters(chosen.name, (page - 1) * size, size)
        cluster_page = Page(page, size, total)
        top_items = store.lists("cf", [(chosen.name, c.label) for c in clusters], LIST_ITEMS)
    return templates.TemplateResponse(request, "clusters.html", {
        "schemes": schemes, "chosen": chosen, "clusters": clusters, "top_items": top_items,
        "cluster_page": cluster_page, "catalog": service.state.catalog})


@router.get("/clusters/{scheme}/{label}", response_class=HTMLResponse)
def cluster_page(request: Request, scheme: IdPath, label: IdPath, service: ServiceDep) -> HTMLResponse:
    store = ClusterStore(service.online, service.state.version)
    profile = store.profile(scheme, label)
    return templates.TemplateResponse(request, "cluster.html", {
        "scheme": scheme, "label": label, "profile": profile,
        "top_items": store.top_items(scheme, label, CLUSTER_ITEMS) if profile else [],
        "catalog": service.state.catalog,
    }, status_code=status.HTTP_200_OK if profile else status.HTTP_404_NOT_FOUND)
