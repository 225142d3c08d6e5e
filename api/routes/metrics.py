"""GET /metrics: the Prometheus exposition of this process' metrics (api/metrics.py).

Open by default, as scrapers expect: it holds counts, timings, route names and the build
version, never an article or a user. ``settings.metrics_open = false`` stops serving it.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import SettingsDep
from api.metrics import MetricsDep

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}})
def metrics(metrics: MetricsDep, settings: SettingsDep) -> Response:
    if not settings.metrics_open:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "metrics are not served here (metrics_open is off)")
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
