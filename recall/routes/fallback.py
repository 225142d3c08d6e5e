"""Non-personalised routes that fill the list for users with no (usable) history. Both read the
live snapshot (``recall/live.py``), never Redis."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recall.domain import Candidates, RequestContext, top_n
from recall.routes.base import NO_NEEDS, RouteConfig


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
    needs = NO_NEEDS
    windows: tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.windows = (float(self.window_hours),)

    @classmethod
    def factory(cls, state, config: RouteConfig) -> HotRoute:
        return cls(
            name=config.route,
            window_hours=float(config.params.get("window_hours", state.settings.hot_window_hours)),
            ctr_power=float(config.params.get("ctr_power", 0.0)),
        )

    def retrieve(self, ctx: RequestContext, n: int) -> Candidates:
        counts = ctx.live.window(float(self.window_hours))
        order = counts.order()
        if not len(order) or n <= 0:
            return Candidates.empty()
        clicks = counts.clicks[order]
        if self.ctr_power:
            scores = clicks * (counts.ctr_at(order) / counts.mean_ctr()) ** self.ctr_power
            best = top_n(scores, n)
        else:
            scores, best = clicks, np.arange(min(n, len(order)))
        return Candidates.of(order[best], scores[best], np.zeros(len(best), np.int32), clicks[best],
                             [f"clicks_{self.window_hours:g}h"])


@dataclass
class FreshRoute:
    """The newest active articles, newest first; score halves every ``half_life_hours``."""

    name: str
    half_life_hours: float = 24.0
    kind: str = "fallback"
    needs = NO_NEEDS
    windows: tuple[float, ...] = ()

    @classmethod
    def factory(cls, state, config: RouteConfig) -> FreshRoute:
        return cls(name=config.route, half_life_hours=float(
            config.params.get("half_life_hours", state.settings.freshness_half_life_hours)))

    def retrieve(self, ctx: RequestContext, n: int) -> Candidates:
        live = ctx.live
        published = live.fresh_times <= ctx.now
        rows, times = live.fresh_rows[published][:n], live.fresh_times[published][:n]
        age_hours = np.maximum(ctx.now - times, 0.0) / 3600
        return Candidates.of(rows, 0.5 ** (age_hours / self.half_life_hours), np.zeros(len(rows), np.int32),
                             None, ["published"])
