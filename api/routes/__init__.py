"""One module per resource; ``router`` mounts them all."""

from fastapi import APIRouter

from api.routes import events, health, items, recall, routes_info

router = APIRouter()
router.include_router(health.router)
for versioned in (recall.router, items.router, events.router, routes_info.router):
    router.include_router(versioned, prefix="/v1")
