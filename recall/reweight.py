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

from dataclasses import dataclass

import numpy as np

from recall.catalog import ItemCatalog
from recall.domain import Candidates
from recall.live import WindowCounts


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

    def factors(self, rows: np.ndarray, counts: WindowCounts, catalog: ItemCatalog,
                now: float) -> dict[str, np.ndarray]:
        """The hot, ctr and fresh terms of each row, each in [0, 1]."""
        max_log_clicks = counts.max_log_clicks()
        hot = np.log1p(counts.clicks_at(rows)) / max_log_clicks if max_log_clicks > 0 else np.zeros(len(rows))
        ctr = np.minimum(1.0, counts.ctr_at(rows) / (2 * counts.mean_ctr()))
        age_hours = np.maximum(now - catalog.published[rows], 0.0) / 3600  # unknown: -inf -> inf -> 0
        fresh = 0.5 ** (age_hours / self.half_life_hours)
        return {"hot": hot, "ctr": ctr, "fresh": fresh}

    def apply(self, candidates: Candidates, counts: WindowCounts, catalog: ItemCatalog,
              now: float) -> Candidates:
        """Rescore and re-sort; the raw similarity is kept on every candidate."""
        if not len(candidates):
            return candidates
        f = self.factors(candidates.rows, counts, catalog, now)
        boost = 1 + self.w_hot * f["hot"] + self.w_ctr * f["ctr"] + self.w_fresh * f["fresh"]
        return candidates.with_scores((candidates.scores * boost).astype(np.float32))
