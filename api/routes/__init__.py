"""One module per resource; ``router`` mounts them all."""

from fastapi import APIRouter, Depends

from api.auth import require_api_key
from api.routes import articles, events, health, items, metrics, recall, routes_info

router = APIRouter()
router.include_router(health.router)
router.include_router(metrics.router)
# Everything under /v1 is for the feed backend and needs its API key (api/auth.py).
v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])
for versioned in (recall.router, items.router, events.router, articles.router, routes_info.router):
    v1.include_router(versioned)
router.include_router(v1)
