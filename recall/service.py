"""The request path: context -> routes -> scorer -> filters -> merger.

One request reads Redis twice (pipelined): the user's context before the routes run, and the
seen/hidden flags of the candidates after. Everything else is in memory. A route that raises
is skipped and reported (fail-open), never a failed request.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from recall.clusterstore import ClusterStore
from recall.domain import Candidate, Dropped, EventRecord, FusedCandidate, RequestContext
from recall.filters import apply_filters, request_filters
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
class RecallResult:
    user_id: str
    candidates: list[FusedCandidate]
    routes: dict[str, RouteRun]
    dropped: Counter
    version: str | None
    cold: bool
    dropped_items: list[Dropped] = field(default_factory=list)


@dataclass(slots=True)
class Retrieved:
    per_route: dict[str, list[Candidate]]
    runs: dict[str, RouteRun]
    dropped: Counter
    dropped_items: list[Dropped]
    cold: bool


class UnknownRouteError(ValueError):
    pass


class RecallService:
    def __init__(self, online: OnlineStore, state: ServingState,
                 configs: dict[str, RouteConfig] | None = None,
                 merger: WeightedRankMerger | None = None):
        self.online = online
        self.settings = state.settings
        self.reweighter = Reweighter.from_settings(state.settings)
        self.merger = merger or WeightedRankMerger(agreement=state.settings.merger_agreement)
        self._state = state
        self._configs = {**default_configs(), **(configs or {})}
        self._routes = self._build_routes()
        self.clusters = ClusterStore(online)
        self._users = UserStateUpdater(online, state)

    # ---- swapping in a new build or new configs (atomic attribute assignment) -----------
    @property
    def state(self) -> ServingState:
        return self._state

    @property
    def configs(self) -> dict[str, RouteConfig]:
        return self._configs

    def set_state(self, state: ServingState) -> None:
        self._state = state
        self._routes = self._build_routes()
        self._users = UserStateUpdater(self.online, state)

    def set_configs(self, configs: dict[str, RouteConfig]) -> None:
        self._configs = {**default_configs(), **configs}
        self._routes = self._build_routes()

    def _build_routes(self) -> dict[str, Route]:
        routes = {}
        for name, spec in ROUTES.items():
            route = spec.factory(self._state, self._configs.get(name, spec.default))
            if route is not None:
                routes[name] = route
        return routes

    @property
    def routes(self) -> dict[str, Route]:
        """Every route this build can serve, enabled or not."""
        return self._routes

    # ---- the request path ----------------------------------------------------------------
    def context(self, user_id: str, now: float | None = None, category: str | None = None) -> RequestContext:
        kinds = [s.user_vector for name, s in ROUTES.items() if s.user_vector and name in self._routes]
        ctx = self.online.fetch_context(user_id, now, vector_kinds=kinds, category=category)
        ctx.window_stats = lambda hours: self.online.window_stats(ctx.now, hours)
        ctx.fresh = lambda n: self.online.fresh(ctx.now, n)
        ctx.cluster_lists = self.clusters.lists
        return ctx

    def record_events(self, events: list[EventRecord]) -> int:
        """Apply events to online state: recent clicks, seen, hot counters, then profiles,
        user vectors, cluster memberships and CF lists. Raises ``OnlineStoreError``."""
        n = self.online.record_events(events)
        self._users.apply(events)
        return n

    def select_routes(self, requested: list[str] | None, served: dict[str, Route],
                      configs: dict[str, RouteConfig]) -> list[str]:
        if requested:
            unknown = [r for r in requested if r not in ROUTES]
            if unknown:
                raise UnknownRouteError(
                    f"unknown route(s) {', '.join(unknown)}; known: {', '.join(sorted(ROUTES))}")
            # Asking for a route by name runs it even when it is disabled (editors inspect it).
            return [r for r in requested if r in served]
        return [r for r in served if configs[r].enabled]

    def run_routes(self, ctx: RequestContext, routes: dict[str, Route], configs: dict[str, RouteConfig],
                   ) -> tuple[dict[str, list[Candidate]], dict[str, RouteRun]]:
        per_route: dict[str, list[Candidate]] = {}
        runs: dict[str, RouteRun] = {}
        for name, route in routes.items():
            config = configs[name]
            run = runs[name] = RouteRun()
            start = time.perf_counter()
            try:
                candidates = route.retrieve(ctx, config.quota)
                if route.kind in SIMILARITY_KINDS and candidates:
                    stats = ctx.window_stats(self.settings.hot_window_hours)
                    candidates = self.reweighter.apply(candidates, stats, self._state.catalog, ctx.now)
                    # A route with an order of its own (crosstag's per-group quotas) restores it.
                    if hasattr(route, "arrange"):
                        candidates = route.arrange(candidates)
            except Exception as exc:  # fail-open: one broken route never fails the request
                log.exception("route %s failed", name)
                run.error = f"{type(exc).__name__}: {exc}"
                candidates = []
            run.ms = (time.perf_counter() - start) * 1000
            run.count = len(candidates)
            per_route[name] = candidates
        return per_route, runs

    def recall(self, user_id: str, n: int, routes: list[str] | None = None,
               category: str | None = None, now: float | None = None) -> RecallResult:
        served, configs = self._routes, self._configs  # one snapshot: a build swap may land meanwhile
        names = self.select_routes(routes, served, configs)
        return self.run_pipeline(user_id, {r: served[r] for r in names}, configs, n,
                                 category=category, now=now)

    def run_pipeline(self, user_id: str, routes: dict[str, Route], configs: dict[str, RouteConfig],
                     n: int, category: str | None = None, now: float | None = None) -> RecallResult:
        """Context -> routes -> scorer -> filters -> merger, for any set of route objects."""
        retrieved = self.retrieve(user_id, routes, configs, category, now)
        fused, merge_drops = self.merger.merge(retrieved.per_route, configs, n)
        retrieved.dropped.update(merge_drops)
        return RecallResult(user_id, fused, retrieved.runs, retrieved.dropped, self._state.version,
                            retrieved.cold, retrieved.dropped_items)

    def retrieve(self, user_id: str, routes: dict[str, Route], configs: dict[str, RouteConfig],
                 category: str | None = None, now: float | None = None) -> Retrieved:
        """Everything before the merger: each route's scored, filtered candidates (at most its
        config's quota). The evaluation calls this once per impression and merges itself."""
        ctx = self.context(user_id, now, category)
        per_route, runs = self.run_routes(ctx, routes, configs)
        all_ids = list(dict.fromkeys(c.item_id for cs in per_route.values() for c in cs))
        filters = request_filters(ctx, self._state.catalog, self.online.filter_state(user_id, all_ids, ctx.now))
        dropped_items: list[Dropped] = []
        for name, candidates in per_route.items():
            kept, removed = apply_filters(candidates, filters)
            per_route[name] = kept
            runs[name].kept = len(kept)
            dropped_items.extend(removed)
        return Retrieved(per_route, runs, Counter(d.reason for d in dropped_items), dropped_items, ctx.is_cold)

    def similar(self, item_id: str, route: str, n: int, now: float | None = None) -> list[Candidate]:
        """An article's neighbours in one i2i route, without unpublished, expired or hidden ones
        (no user is involved, so nothing is "seen")."""
        if route not in ROUTES or ROUTES[route].kind != "i2i":
            i2i = sorted(r for r, s in ROUTES.items() if s.kind == "i2i")
            raise UnknownRouteError(f"{route!r} is not an item-to-item route; use one of {', '.join(i2i)}")
        served = self._routes.get(route)
        if served is None:
            return []
        # Ask for twice as many: the filters may take some (expired news is common).
        neighbours = served.similar(item_id, 2 * n)
        ctx = RequestContext(user_id="", now=time.time() if now is None else now)
        state = self.online.filter_state("", [c.item_id for c in neighbours], ctx.now)
        kept, _ = apply_filters(neighbours, request_filters(ctx, self._state.catalog, state))
        return kept[:n]
