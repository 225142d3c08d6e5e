"""The merger: fuse per-route candidate lists into one list, keeping every route's provenance.

Route scores live on different scales (a cosine, a click count, a freshness decay), so the
merger fuses ranks, not scores: weighted reciprocal-rank fusion,

    fused(item) = sum over routes r that found it of  weight_r / (rrf_k + rank_r(item))

after each route was cut to its quota (its best ``quota_r`` candidates). An item found by
several routes gets all their contributions and keeps all their provenance; a route's top items
reach the fused list in proportion to its weight, so a strong fallback (hot) is never drowned by
a route with many mediocre candidates, nor does it drown them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from recall.domain import Candidate, FusedCandidate
from recall.routes.base import RouteConfig


@dataclass(frozen=True, slots=True)
class WeightedRankMerger:
    rrf_k: float = 60.0

    def merge(self, per_route: dict[str, list[Candidate]], configs: dict[str, RouteConfig],
              n: int) -> tuple[list[FusedCandidate], Counter]:
        """Top ``n`` fused candidates, and counts of candidates merged away ("duplicate") or
        cut by a route's quota ("quota")."""
        fused: dict[str, FusedCandidate] = {}
        dropped: Counter = Counter()
        for route, candidates in per_route.items():
            config = configs[route]
            seen_here: set[str] = set()
            rank = 0
            for c in candidates:
                if c.item_id in seen_here:  # a route listing an item twice: keep its best
                    dropped["duplicate"] += 1
                    continue
                if rank >= config.quota:
                    dropped["quota"] += 1
                    continue
                seen_here.add(c.item_id)
                rank += 1
                contribution = config.weight / (self.rrf_k + rank)
                entry = fused.get(c.item_id)
                if entry is None:
                    fused[c.item_id] = FusedCandidate(c.item_id, contribution, [c])
                else:
                    dropped["duplicate"] += 1
                    entry.score += contribution
                    entry.routes.append(c)
        ranked = sorted(fused.values(), key=lambda f: (-f.score, f.item_id))
        return ranked[:n], dropped
