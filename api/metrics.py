"""Prometheus metrics of one app: HTTP traffic, the recall pipeline, the fast path, live state.

Every app gets a registry of its own (tests run several apps in one process). Counters and
histograms are updated where things happen: ``observe_request`` for every request (called by
``api.requestlog.RequestLogMiddleware``, which logs it too),
``observe_recall`` from the recall endpoint (per-route candidates and latencies, drops by
reason, which routes served cold users), ``observe_articles`` from the fast path. What the
service holds (build version, index sizes, Redis errors) is read at scrape time by
``ServiceCollector``, so it is never stale.

With several worker processes each keeps its own numbers and a scrape reaches one of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.routing import NoMatchFound
from starlette.types import Scope

from recall.service import RecallResult, RecallService

PREFIX = "newsrecall"
# Candidates a route returns per request: quotas are a few hundred, max_n a thousand.
CANDIDATE_BUCKETS = (0, 1, 5, 10, 25, 50, 100, 200, 300, 500, 1000)
# Request and route latencies: in-memory routes take milliseconds, a request tens of them.
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED = "unmatched"  # the endpoint label of paths no route serves (404s), whatever they were


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        metric = {"namespace": PREFIX, "registry": self.registry}
        self.requests = Counter("http_requests", "HTTP requests by endpoint (route template) and status",
                                ["method", "endpoint", "status"], **metric)
        self.request_seconds = Histogram("http_request_duration_seconds", "HTTP request latency",
                                         ["method", "endpoint"], buckets=SECONDS_BUCKETS, **metric)
        self.recalls = Counter("recall_requests", "recall requests; cold: the user had no recent clicks",
                               ["cold"], **metric)
        self.route_candidates = Histogram(
            "route_candidates", "candidates per recall request by route; stage returned (by the route) "
            "or kept (after filters)", ["route", "stage"], buckets=CANDIDATE_BUCKETS, **metric)
        self.route_seconds = Histogram("route_duration_seconds", "time a route took in a recall request",
                                       ["route"], buckets=SECONDS_BUCKETS, **metric)
        self.route_errors = Counter("route_errors", "recall requests in which a route raised and was skipped",
                                    ["route"], **metric)
        self.dropped = Counter("recall_dropped", "candidates dropped by filters and the merger, by reason",
                               ["reason"], **metric)
        self.cold_served = Counter("cold_route_served", "recall requests of cold users in which a route "
                                   "contributed candidates (the fallbacks at work)", ["route"], **metric)
        self.fastpath_articles = Counter("fastpath_articles", "articles received by POST /v1/articles", **metric)
        self.fastpath_indexed = Counter("fastpath_indexed", "articles from POST /v1/articles held by a "
                                        "route's live index afterwards", ["route"], **metric)
        self._service: ServiceCollector | None = None

    def track(self, service: RecallService) -> None:
        """Export what ``service`` holds at every scrape (the app's lifespan calls this; a
        restarted lifespan replaces the service it tracked)."""
        if self._service is not None:
            self.registry.unregister(self._service)
        self._service = ServiceCollector(service)
        self.registry.register(self._service)

    def observe_request(self, scope: Scope, status: int, seconds: float) -> None:
        """One finished HTTP request (``RequestLogMiddleware`` calls this)."""
        method, endpoint = scope["method"], endpoint_of(scope)
        self.requests.labels(method, endpoint, str(status)).inc()
        self.request_seconds.labels(method, endpoint).observe(seconds)

    def observe_recall(self, result: RecallResult) -> None:
        self.recalls.labels(str(result.cold).lower()).inc()
        for route, run in result.routes.items():
            self.route_candidates.labels(route, "returned").observe(run.count)
            self.route_candidates.labels(route, "kept").observe(run.kept)
            self.route_seconds.labels(route).observe(run.ms / 1000)
            if run.error:
                self.route_errors.labels(route).inc()
            if result.cold and run.kept:
                self.cold_served.labels(route).inc()
        for reason, count in result.dropped.items():
            self.dropped.labels(reason).inc(count)

    def observe_articles(self, articles: int, indexed: dict[str, int]) -> None:
        self.fastpath_articles.inc(articles)
        for route, count in indexed.items():
            self.fastpath_indexed.labels(route).inc(count)


class ServiceCollector(Collector):
    """The serving build, its index sizes (live: the fast path grows them) and Redis errors."""

    def __init__(self, service: RecallService):
        self.service = service

    def collect(self) -> Iterator[Metric]:
        state = self.service.state  # one read: a build swap mid-scrape must not mix two versions
        version = state.version or ""
        build = GaugeMetricFamily(f"{PREFIX}_build_info", "the build being served (value 1; empty "
                                  "version: none, fallback routes only)", labels=["version"])
        build.add_metric([version], 1)
        yield build
        sizes = GaugeMetricFamily(f"{PREFIX}_index_vectors", "vectors in a route's live index",
                                  labels=["route", "version"])
        for route, index in state.indexes.items():
            sizes.add_metric([route, version], len(index))
        yield sizes
        yield CounterMetricFamily(f"{PREFIX}_redis_errors", "Redis failures met by reads since start "
                                  "(requests degraded instead of failing)", value=self.service.online.errors)


def endpoint_of(scope: Scope) -> str:
    """The route template (``/v1/recall/{user_id}``), never the raw path: label values stay few.

    ``scope["route"]`` is the matched route as declared, without the prefixes of the routers
    that include it (FastAPI resolves those lazily): they are what the request's path has
    before the route's own part.
    """
    route = scope.get("route")
    template = getattr(route, "path", None)
    if template is None:
        return UNMATCHED
    try:
        own_part = route.url_path_for(route.name, **scope.get("path_params", {}))
    except NoMatchFound:
        return template
    path = scope["path"]
    return path[: len(path) - len(own_part)] + template if path.endswith(own_part) else template


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


MetricsDep = Annotated[Metrics, Depends(get_metrics)]
