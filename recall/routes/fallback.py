"""Non-personalised routes that fill the list for users with no (usable) history."""

from __future__ import annotations

import math
from dataclasses import dataclass

from recall.domain import Candidate, RequestContext
from recall.routes.base import RouteConfig


@dataclass
class HotRoute:
    """Most clicked articles over a recent window of event time, nudged by click-through rate.

    score = clicks_in_window * (ctr / mean_ctr) ** ctr_power, with ctr smoothed towards a 1-in-20
    prior; ``ctr_power = 0`` ranks by clicks alone.
    """

    name: str
    window_hours: float = 24.0
    ctr_power: float = 0.0
    kind: str = "fallback"

    @classmethod
    def factory(cls, state, config: RouteConfig) -> HotRoute:
        return cls(
            name=config.route,
            window_hours=float(config.params.get("window_hours", state.settings.hot_window_hours)),
            ctr_power=float(config.params.get("ctr_power", 0.0)),
        )

    def retrieve(self, ctx: RequestContext, n: int) -> list[Candidate]:
        stats = ctx.window_stats(self.window_hours)
        if not stats.clicks:
            return []
        mean_ctr = stats.mean_ctr()
        scored = []
        for item_id, clicks in stats.clicks.items():
            score = clicks
            if self.ctr_power:
                score *= (stats.ctr(item_id) / mean_ctr) ** self.ctr_power
            scored.append((score, clicks, item_id))
        scored.sort(reverse=True)
        return [
            Candidate(item_id, float(score), self.name, f"clicks_{self.window_hours:g}h", float(clicks))
            for score, clicks, item_id in scored[:n]
        ]


@dataclass
class FreshRoute:
    """The newest active articles, newest first; score halves every ``half_life_hours``."""

    name: str
    half_life_hours: float = 24.0
    kind: str = "fallback"

    @classmethod
    def factory(cls, state, config: RouteConfig) -> FreshRoute:
        return cls(name=config.route, half_life_hours=float(
            config.params.get("half_life_hours", state.settings.freshness_half_life_hours)))

    def retrieve(self, ctx: RequestContext, n: int) -> list[Candidate]:
        out = []
        for item_id, published in ctx.fresh(n):
            age_hours = max(ctx.now - published, 0.0) / 3600
            out.append(Candidate(item_id, math.pow(0.5, age_hours / self.half_life_hours), self.name,
                                 "published", None))
        return out
