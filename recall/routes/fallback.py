"""Routes over the live snapshot (``recall/live.py``), never Redis: the non-personalised ones that
fill the list for users with no (usable) history (hot, fresh, trending), and hot narrowed to the
user's categories."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recall.catalog import ItemCatalog
from recall.domain import Candidates, RequestContext, top_n
from recall.routes.base import NO_NEEDS, RouteConfig


COUNTS = ("clicks", "impressions")


@dataclass
class HotRoute:
    """Most clicked articles over a recent window of event time, nudged by click-through rate.

    score = clicks_in_window * (ctr / mean_ctr) ** ctr_power, with ctr smoothed towards a 1-in-20
    prior; ``ctr_power = 0`` ranks by clicks alone.

    With ``count = "impressions"`` it ranks by impressions instead: what the platform shows most
    right now (the "shown" route). On MIND, whose impressions are another ranker's picks, the
    articles shown most in the last hour hold 0.81 of the next clicks within 200, the most
    clicked over 6 hours 0.62. On a platform of its own, impressions are what this service
    recalled: a feedback loop, which is why it is a route of its own with its own weight.
    """

    name: str
    window_hours: float = 24.0
    ctr_power: float = 0.0
    count: str = "clicks"
    kind: str = "fallback"
    needs = NO_NEEDS
    windows: tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        if self.count not in COUNTS:
            raise ValueError(f"route {self.name}: count must be one of {COUNTS}, not {self.count!r}")
        self.windows = (float(self.window_hours),)

    @classmethod
    def factory(cls, state, config: RouteConfig) -> HotRoute:
        return cls(
            name=config.route,
            window_hours=float(config.params.get("window_hours", state.settings.hot_window_hours)),
            ctr_power=float(config.params.get("ctr_power", 0.0)),
            count=str(config.params.get("count", "clicks")),
        )

    def retrieve(self, ctx: RequestContext, n: int) -> Candidates:
        counts = ctx.live.window(float(self.window_hours))
        by_clicks = self.count == "clicks"
        order = counts.order(by_clicks)
        if not len(order) or n <= 0:
            return Candidates.empty()
        counted = (counts.clicks if by_clicks else counts.impressions)[order]
        if self.ctr_power:
            scores = counted * (counts.ctr_at(order) / counts.mean_ctr()) ** self.ctr_power
            best = top_n(scores, n)
        else:
            scores, best = counted, np.arange(min(n, len(order)))
        return Candidates.of(order[best], scores[best], np.zeros(len(best), np.int32), counted[best],
                             [f"{self.count}_{self.window_hours:g}h"])


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


@dataclass
class HotCategoryRoute:
    """Hot within the user's top categories: the categories of the user's newest ``clicks``
    clicks (catalog category codes, no Redis read), the ``categories`` most frequent kept; an
    article of one of them scores its clicks over the window times its category's share of
    those clicks (the top category's share is 1). Articles without a category (MIND's id-only
    ones) never match."""

    name: str
    catalog: ItemCatalog
    window_hours: float = 6.0
    categories: int = 3
    clicks: int = 20
    kind: str = "cluster"  # personal: the user's categories are a group of readers
    needs = NO_NEEDS  # recent clicks always come with the context
    windows: tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.windows = (float(self.window_hours),)

    @classmethod
    def factory(cls, state, config: RouteConfig) -> HotCategoryRoute | None:
        if not state.catalog.categories:
            return None  # no build, or one whose articles have no categories
        params = config.params
        return cls(config.route, state.catalog,
                   float(params.get("window_hours", state.settings.hot_window_hours)),
                   int(params.get("categories", 3)), int(params.get("clicks", 20)))

    def retrieve(self, ctx: RequestContext, n: int) -> Candidates:
        codes = self.catalog.category[self.catalog.rows(ctx.recent_clicks[:self.clicks])]
        codes, frequency = np.unique(codes[codes >= 0], return_counts=True)
        if not len(codes) or n <= 0:
            return Candidates.empty()
        top = np.argsort(-frequency, kind="stable")[:self.categories]
        share = np.zeros(len(self.catalog.categories) + 1, np.float32)
        share[codes[top]] = frequency[top] / frequency[top[0]]
        seed_of = np.full(len(share), -1, np.int32)
        seed_of[codes[top]] = np.arange(len(top))
        counts = ctx.live.window(float(self.window_hours))
        order = counts.order()
        category = self.catalog.category
        order = order[order < len(category)]
        code = category[order]
        inside = (code >= 0) & (share[code] > 0)
        rows, code = order[inside], code[inside]
        scores = counts.clicks[rows] * share[code]
        best = top_n(scores, n)
        return Candidates.of(rows[best], scores[best], seed_of[code[best]], counts.clicks[rows[best]],
                             [self.catalog.categories[c] for c in codes[top]])


@dataclass
class TrendingRoute:
    """Articles whose clicks are rising: clicks over the last ``short_hours`` against what the
    ``long_hours`` window's rate predicts for so short a time, as a z-score,

        (short - expected) / sqrt(expected + 1),  expected = long * short_hours / long_hours,

    so a burst counts more than a steady flow, and volume still counts (one click is noise).
    Every article clicked in the long window is listed: those fading (no recent click) last."""

    name: str
    short_hours: float = 1.0
    long_hours: float = 6.0
    kind: str = "fallback"
    needs = NO_NEEDS
    windows: tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.windows = (float(self.short_hours), float(self.long_hours))

    @classmethod
    def factory(cls, state, config: RouteConfig) -> TrendingRoute:
        params = config.params
        return cls(config.route, float(params.get("short_hours", 1.0)),
                   float(params.get("long_hours", state.settings.hot_window_hours)))

    def retrieve(self, ctx: RequestContext, n: int) -> Candidates:
        long = ctx.live.window(float(self.long_hours))
        rows = long.order()
        if not len(rows) or n <= 0:
            return Candidates.empty()
        recent = ctx.live.window(float(self.short_hours)).clicks_at(rows).astype(np.float64)
        expected = np.maximum(long.clicks[rows], recent) * (self.short_hours / self.long_hours)
        scores = (recent - expected) / np.sqrt(expected + 1.0)
        best = top_n(scores, n)
        return Candidates.of(rows[best], scores[best], np.zeros(len(best), np.int32), recent[best],
                             [f"clicks_{self.short_hours:g}h_vs_{self.long_hours:g}h"])
