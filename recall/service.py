"""The request path: context -> routes -> scorer -> filters -> merger.

A ``Pipeline`` is one build, one set of route configs and the routes built from them, with the
live snapshot source (hot, fresh, hidden); it is immutable and swapped in with one assignment,
and a request takes it once and uses it throughout, so a build swap can never mix two builds in
one response.

One request reads Redis at most twice (pipelined, before the routes): the user's own keys, then
only where needed the lists of the user's clusters (``OnlineStore.fetch_context``), both of the
pipeline's build version where the build derived them (vectors, memberships, lists). Routes do no
I/O: they read the context, the build's arrays and the live snapshot, and return arrays. The
scorer, the filters and the merger work on those arrays; provenance objects are made only for
the ``n`` returned. A route that raises or runs past its time budget is skipped and reported
(fail-open), never a failed request.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from recall.domain import (
    Candidate,
    Candidates,
    ContextNeeds,
    Deadline,
    Dropped,
    EventRecord,
    FusedCandidate,
    RequestContext,
    RouteTimeout,
)
from recall.filters import Filtered, apply_filters, request_filters
from recall.live import LiveState
from recall.merger import WeightedRankMerger
from recall.online import OnlineStore
from recall.reweight import Reweighter
from recall.routes import ROUTES, default_configs
from recall.routes.base import SIMILARITY_KINDS, Route, RouteConfig
from recall.serving import ServingState
from recall.userstate import UserStateUpdater

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RouteRun:
    count: int = 0  # candidates the route returned
    kept: int = 0  # after filters
    ms: float = 0.0
    error: str | None = None


@dataclass(slots=True)
class Retrieved:
    """Everything before the merger: each route's scored, filtered candidates."""

    per_route: dict[str, Candidates]
    runs: dict[str, RouteRun]
    filtered: Filtered
    cold: bool
    degraded: bool
    ids: list[str]  # catalog rows -> article ids
    recent_clicks: list[str] = field(default_factory=list)
    click_times: list[float] = field(default_factory=list)

    @property
    def dropped(self) -> Counter:
        return self.filtered.dropped

    def listing(self, route: str, limit: int | None = None) -> list[Candidate]:
        return self.per_route[route].to_list(route, self.ids, limit)

    def dropped_items(self) -> list[Dropped]:
        out = []
        for route, (removed, reasons) in self.filtered.removed.items():
            for i in range(len(removed)):
                out.append(Dropped(removed.candidate(i, route, self.ids), self.filtered.reasons[reasons[i]]))
        return out


@dataclass(slots=True)
class RecallResult:
    user_id: str
    candidates: list[FusedCandidate]
    routes: dict[str, RouteRun]
    dropped: Counter
    version: str | None
    cold: bool
    degraded: bool = False
    retrieved: Retrieved | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Pipeline:
    state: ServingState
    configs: dict[str, RouteConfig]
    routes: dict[str, Route]  # every route this build can serve, enabled or not
    live: LiveState
    users: UserStateUpdater


class UnknownRouteError(ValueError):
    pass


class RecallService:
    def __init__(self, online: OnlineStore, state: ServingState,
                 configs: dict[str, RouteConfig] | None = None,
                 merger: WeightedRankMerger | None = None, enforce_budgets: bool = True,
                 background: OnlineStore | None = None):
        self.online = online
        # Background reads (the live snapshot, the rebuild of an emptied Redis) move more data
        # than a request: on a client of their own, with a job's timeouts, they never trip the
        # request client's circuit breaker.
        self.background = background or online
        self.settings = state.settings
        self.reweighter = Reweighter.from_settings(state.settings)
        self.merger = merger or WeightedRankMerger(agreement=state.settings.merger_agreement)
        # The replay measures quality, not speed: it lets every route finish.
        self.enforce_budgets = enforce_budgets
        self._refresh_every: float | None = None  # set by start(): a background live refresher
        self._pipeline = self._build(state, {**default_configs(), **(configs or {})},
                                     LiveState(self.background, state.catalog))

    # ---- swapping in a new build or new configs (one assignment) -----------------------------
    def _build(self, state: ServingState, configs: dict[str, RouteConfig], live: LiveState) -> Pipeline:
        routes = {}
        for name, spec in ROUTES.items():
            route = spec.factory(state, configs.get(name, spec.default))
            if route is not None:
                routes[name] = route
        live.want([self.settings.hot_window_hours, *(w for r in routes.values() for w in r.windows)])
        return Pipeline(state, configs, routes, live, UserStateUpdater(self.online, state))

    @property
    def pipeline(self) -> Pipeline:
        return self._pipeline

    @property
    def state(self) -> ServingState:
        return self._pipeline.state

    @property
    def configs(self) -> dict[str, RouteConfig]:
        return self._pipeline.configs

    @property
    def routes(self) -> dict[str, Route]:
        """Every route this build can serve, enabled or not."""
        return self._pipeline.routes

    def set_state(self, state: ServingState) -> None:
        old = self._pipeline
        live = LiveState(self.background, state.catalog, old.live.windows)
        if self._refresh_every is not None:
            live.start(self._refresh_every, time.time)  # first snapshot read before the swap
        self._pipeline = self._build(state, old.configs, live)
        old.live.stop()

    def set_configs(self, configs: dict[str, RouteConfig]) -> None:
        old = self._pipeline
        self._pipeline = self._build(old.state, {**default_configs(), **configs}, old.live)

    def start(self) -> None:
        """Serving: refresh the live snapshot in the background, never on a request."""
        self._refresh_every = self.settings.live_refresh_seconds
        self._pipeline.live.start(self._refresh_every, time.time)

    def close(self) -> None:
        self._pipeline.live.stop()

    # ---- the click path ---------------------------------------------------------------------
    def record_events(self, events: list[EventRecord]) -> int:
        """Apply events to online state: recent clicks, seen, hot counters (Redis and this
        process' live snapshot), then profiles, user vectors, cluster memberships and CF lists.
        Raises ``OnlineStoreError``."""
        p = self._pipeline
        n = self.online.record_events(events)
        p.live.count(events)
        p.users.apply(events)
        return n

    # ---- the request path -------------------------------------------------------------------
    def select_routes(self, requested: list[str] | None, p: Pipeline) -> list[str]:
        if requested:
            unknown = [r for r in requested if r not in ROUTES]
            if unknown:
                raise UnknownRouteError(
                    f"unknown route(s) {', '.join(unknown)}; known: {', '.join(sorted(ROUTES))}")
            # Asking for a route by name runs it even when it is disabled (editors inspect it).
            return [r for r in requested if r in p.routes]
        return [r for r in p.routes if p.configs[r].enabled]

    def recall(self, user_id: str, n: int, routes: list[str] | None = None,
               category: str | None = None, now: float | None = None) -> RecallResult:
        p = self._pipeline  # one snapshot for the whole request
        names = self.select_routes(routes, p)
        return self.run_pipeline(p, user_id, {r: p.routes[r] for r in names}, p.configs, n,
                                 category=category, now=now)

    def run_pipeline(self, p: Pipeline, user_id: str, routes: dict[str, Route],
                     configs: dict[str, RouteConfig], n: int, category: str | None = None,
                     now: float | None = None) -> RecallResult:
        """Context -> routes -> scorer -> filters -> merger, for any set of route objects."""
        retrieved = self.retrieve(p, user_id, routes, configs, category, now)
        fused, merge_drops = self.merger.merge(retrieved.per_route, configs, n, retrieved.ids)
        return RecallResult(user_id, fused, retrieved.runs, retrieved.dropped + merge_drops,
                            p.state.version, retrieved.cold, retrieved.degraded, retrieved)

    def context(self, p: Pipeline, user_id: str, routes: dict[str, Route], now: float | None = None,
                category: str | None = None) -> RequestContext:
        now = time.time() if now is None else now
        needs = ContextNeeds()
        for route in routes.values():
            needs |= route.needs
        ctx = self.online.fetch_context(user_id, now, p.state.catalog, needs, category, version=p.state.version)
        p.live.want(w for r in routes.values() for w in r.windows)
        ctx.live = p.live.get(now)
        return ctx

    def retrieve(self, p: Pipeline, user_id: str, routes: dict[str, Route], configs: dict[str, RouteConfig],
                 category: str | None = None, now: float | None = None) -> Retrieved:
        """Everything before the merger: each route's scored, filtered candidates. The
        evaluation calls this once per impression and merges itself."""
        ctx = self.context(p, user_id, routes, now, category)
        per_route, runs = self.run_routes(p, ctx, routes, configs)
        catalog = p.state.catalog
        filtered = apply_filters(per_route, request_filters(ctx, catalog))
        for name, run in runs.items():
            run.kept = len(filtered.kept[name])
        return Retrieved(filtered.kept, runs, filtered, ctx.is_cold, ctx.degraded, catalog.ids,
                         ctx.recent_clicks, ctx.click_times)

    def run_routes(self, p: Pipeline, ctx: RequestContext, routes: dict[str, Route],
                   configs: dict[str, RouteConfig]) -> tuple[dict[str, Candidates], dict[str, RouteRun]]:
        per_route: dict[str, Candidates] = {}
        runs: dict[str, RouteRun] = {}
        counts = ctx.live.window(float(self.settings.hot_window_hours))
        for name, route in routes.items():
            config = configs[name]
            run = runs[name] = RouteRun()
            budget = float(config.params.get("budget_ms", self.settings.route_budget_ms))
            start = time.perf_counter()
            ctx.deadline = Deadline(start + budget / 1000) if self.enforce_budgets else Deadline()
            try:
                candidates = route.retrieve(ctx, config.quota)
                if route.kind in SIMILARITY_KINDS and len(candidates):
                    candidates = self.reweighter.apply(candidates, counts, p.state.catalog, ctx.now)
                    # A route with an order of its own (crosstag's per-group quotas) restores it.
                    if hasattr(route, "arrange"):
                        candidates = route.arrange(candidates)
                ctx.deadline.check()  # an answer past the budget is as good as none
            except RouteTimeout:
                run.error = "timeout"
                candidates = Candidates.empty()
            except Exception as exc:  # fail-open: one broken route never fails the request
                log.exception("route %s failed", name)
                run.error = type(exc).__name__
                candidates = Candidates.empty()
            run.ms = (time.perf_counter() - start) * 1000
            run.count = len(candidates)
            per_route[name] = candidates
        ctx.deadline = Deadline()
        return per_route, runs

    def similar(self, item_id: str, route: str, n: int, now: float | None = None) -> list[Candidate]:
        """An article's neighbours in one i2i route, without unpublished, expired or hidden ones
        (no user is involved, so nothing is "seen")."""
        if route not in ROUTES or ROUTES[route].kind != "i2i":
            i2i = sorted(r for r, s in ROUTES.items() if s.kind == "i2i")
            raise UnknownRouteError(f"{route!r} is not an item-to-item route; use one of {', '.join(i2i)}")
        p = self._pipeline
        served = p.routes.get(route)
        if served is None:
            return []
        now = time.time() if now is None else now
        # Ask for twice as many: the filters may take some (expired news is common).
        neighbours = served.similar(item_id, 2 * n)
        ctx = RequestContext(user_id="", now=now, live=p.live.get(now), seen_rows=np.zeros(0, np.int32))
        kept = apply_filters({route: neighbours}, request_filters(ctx, p.state.catalog)).kept[route]
        return kept.to_list(route, p.state.catalog.ids, n)
