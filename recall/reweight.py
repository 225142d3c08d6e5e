"""The scorer: similarity reweighted by hotness, click-through rate and freshness.

    score = similarity * (1 + w_hot * hot + w_ctr * ctr + w_fresh * fresh)

with every term in [0, 1]:

* ``hot``   = log(1 + clicks) / log(1 + max clicks), clicks over the hot window;
* ``ctr``   = min(1, smoothed CTR / (2 * mean CTR)): 0.5 for an average article;
* ``fresh`` = 0.5 ** (age / half-life), 0 when the publish time is unknown.

Defaults (settings): w_hot 0.3, w_ctr 0.2, w_fresh 0.5, half-life 24 h, window 24 h. The
similarity stays the dominant factor (a factor of at most 2 separates the best-supported
neighbour from a stale, never-clicked one), so the cosine floor keeps its meaning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from recall.catalog import ItemCatalog
from recall.domain import Candidate, WindowStats


@dataclass(frozen=True, slots=True)
class Reweighter:
    w_hot: float = 0.3
    w_ctr: float = 0.2
    w_fresh: float = 0.5
    half_life_hours: float = 24.0

    @classmethod
    def from_settings(cls, settings) -> Reweighter:
        return cls(settings.weight_hotness, settings.weight_ctr, settings.weight_freshness,
                   settings.freshness_half_life_hours)

    def factors(self, item_id: str, stats: WindowStats, catalog: ItemCatalog, now: float,
                max_log_clicks: float, mean_ctr: float) -> dict[str, float]:
        clicks = stats.clicks.get(item_id, 0.0)
        hot = math.log1p(clicks) / max_log_clicks if max_log_clicks > 0 else 0.0
        ctr = min(1.0, stats.ctr(item_id) / (2 * mean_ctr))
        meta = catalog.get(item_id)
        fresh = 0.0
        if meta is not None and meta.published is not None:
            fresh = 0.5 ** (max(now - meta.published, 0.0) / 3600 / self.half_life_hours)
        return {"hot": hot, "ctr": ctr, "fresh": fresh}

    def apply(self, candidates: list[Candidate], stats: WindowStats, catalog: ItemCatalog,
              now: float) -> list[Candidate]:
        """Rescore and re-sort; the raw similarity is kept on every candidate."""
        max_log_clicks = math.log1p(max(stats.clicks.values(), default=0.0))
        mean_ctr = stats.mean_ctr()
        out = []
        for c in candidates:
            f = self.factors(c.item_id, stats, catalog, now, max_log_clicks, mean_ctr)
            boost = 1 + self.w_hot * f["hot"] + self.w_ctr * f["ctr"] + self.w_fresh * f["fresh"]
            out.append(replace(c, score=c.score * boost))
        out.sort(key=lambda c: -c.score)
        return out
