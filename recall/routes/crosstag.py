"""crosstag: one query per interest group, so one dominant interest cannot fill the list.

The user's profile tags are grouped by the category they were read in; the ``groups`` heaviest
categories each contribute a query vector (the weighted sum of that group's ``tags_per_group``
top tags) searched in tag2vec's index. The groups' results are interleaved round-robin with an
equal quota each, so a reader of 90% football and 10% elections still gets elections. The
interleave is redone after the scorer (``arrange``), which would otherwise sort the groups
back into one list by score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recall.domain import Candidates, ContextNeeds, RequestContext
from recall.index import VectorIndex
from recall.routes.base import RouteConfig
from recall.uservectors import TAG_ROUTE, TagVectors


@dataclass
class CrossTagRoute:
    name: str
    index: VectorIndex
    tag_vectors: TagVectors
    groups: int = 3
    tags_per_group: int = 3
    cosine_floor: float = 0.0
    kind: str = "u2i"
    needs = ContextNeeds(profile=True)
    windows: tuple[float, ...] = ()

    @classmethod
    def factory(cls, state, config: RouteConfig) -> CrossTagRoute | None:
        index = state.indexes.get(TAG_ROUTE)
        if index is None or not len(index) or state.users.tag_vectors is None:
            return None
        p = config.params
        return cls(config.route, index, state.users.tag_vectors, int(p.get("groups", 3)),
                   int(p.get("tags_per_group", 3)), float(p.get("cosine_floor", 0.0)))

    def queries(self, ctx: RequestContext) -> list[tuple[str, np.ndarray]]:
        """(seed, query vector) per interest group, heaviest group first."""
        if not ctx.profile:
            return []
        groups = ctx.profile.tags_by_category()
        ranked = sorted(groups.items(), key=lambda kv: -sum(kv[1].values()))[: self.groups]
        queries = []
        for category, tags in ranked:
            top = sorted(tags.items(), key=lambda kv: -kv[1])[: self.tags_per_group]
            vector = self.tag_vectors.weighted_sum(top)
            if vector is not None and np.any(vector):
                queries.append((f"{category or '-'}:{'+'.join(t for t, _ in top)}", vector))
        return queries

    def retrieve(self, ctx: RequestContext, n: int) -> Candidates:
        queries = self.queries(ctx)
        if not queries or n <= 0:
            return Candidates.empty()
        per_group = -(-n // len(queries))  # ceil: the groups share the quota equally
        delta = self.index.delta
        rows, sims = self.index.search(np.stack([v for _, v in queries]), per_group + len(ctx.recent_clicks), delta)
        ctx.deadline.check()
        keep = (rows >= 0) & (sims >= self.cosine_floor)
        group = np.broadcast_to(np.arange(len(queries), dtype=np.int32)[:, None], rows.shape)
        found = Candidates.of(self.index.to_catalog(rows[keep], delta), sims[keep], group[keep], sims[keep],
                              [seed for seed, _ in queries])
        return self.arrange(found).take(np.s_[:n])

    def arrange(self, scored: Candidates) -> Candidates:
        """Round-robin over the groups (first of each, then second of each...), each group in
        its current order, an item taken once. Scores are capped by the score before them, so
        the list stays sorted by score as every route's is (the merger fuses by rank; the raw
        similarity stays on each candidate)."""
        rank = np.zeros(len(scored), np.int64)
        for g in np.unique(scored.seeds):
            at = np.flatnonzero(scored.seeds == g)
            rank[at] = np.arange(len(at))
        order = np.lexsort((scored.seeds, rank))
        _, first = np.unique(scored.rows[order], return_index=True)
        picked = order[np.sort(first)]
        out = scored.take(picked)
        out.scores = np.minimum.accumulate(out.scores)
        return out
