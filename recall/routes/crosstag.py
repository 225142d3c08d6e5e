"""crosstag: one query per interest group, so one dominant interest cannot fill the list.

The user's profile tags are grouped by the category they were read in; the ``groups`` heaviest
categories each contribute a query vector (the weighted sum of that group's ``tags_per_group``
top tags) searched in tag2vec's index. The groups' results are interleaved round-robin with an
equal quota each, so a reader of 90% football and 10% elections still gets elections. The
interleave is redone after the scorer (``arrange``), which would otherwise sort the groups
back into one list by score.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from recall.domain import Candidate, RequestContext
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

    def retrieve(self, ctx: RequestContext, n: int) -> list[Candidate]:
        queries = self.queries(ctx)
        if not queries or n <= 0:
            return []
        per_group = -(-n // len(queries))  # ceil: the groups share the quota equally
        hits = self.index.search(np.stack([v for _, v in queries]), per_group + len(ctx.recent_clicks))
        return interleave([[Candidate(i, s, self.name, seed, s) for i, s in group if s >= self.cosine_floor]
                           for (seed, _), group in zip(queries, hits)])[:n]

    def arrange(self, scored: list[Candidate]) -> list[Candidate]:
        """Round-robin over the groups again, each group in scored order."""
        groups: dict[str, list[Candidate]] = {}
        for c in scored:
            groups.setdefault(c.seed, []).append(c)
        return interleave(list(groups.values()))


def interleave(lists: list[list[Candidate]]) -> list[Candidate]:
    """First of each list, then second of each..., skipping items already taken. Scores are
    capped by the score before them, so that the list stays sorted by score as every route's is
    (the merger fuses by rank; the raw similarity stays on each candidate)."""
    out: list[Candidate] = []
    taken: set[str] = set()
    cap = float("inf")
    for rank in range(max(map(len, lists), default=0)):
        for group in lists:
            if rank < len(group) and group[rank].item_id not in taken:
                taken.add(group[rank].item_id)
                cap = min(cap, group[rank].score)
                out.append(replace(group[rank], score=cap))
    return out
