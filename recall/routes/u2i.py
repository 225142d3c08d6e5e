"""User-to-item: one of the user's vectors (prefetched from Redis) against an item index."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from recall.domain import Candidates, ContextNeeds, RequestContext
from recall.index import VectorIndex
from recall.routes.base import RouteConfig


@dataclass
class UserVectorRoute:
    name: str
    index: VectorIndex
    vector_kind: str
    cosine_floor: float = 0.0
    kind: str = "u2i"
    windows: tuple[float, ...] = ()
    needs: ContextNeeds = field(init=False)

    def __post_init__(self) -> None:
        self.needs = ContextNeeds(vector_kinds=(self.vector_kind,))

    @classmethod
    def over(cls, index_route: str, vector_kind: str) -> Callable:
        """The factory of a route searching ``index_route``'s index with the user's
        ``vector_kind`` vector (DSSM: its own index; user2vec: tag2vec's)."""
        def factory(state, config: RouteConfig) -> UserVectorRoute | None:
            index = state.indexes.get(index_route)
            if index is None or not len(index):
                return None
            return cls(config.route, index, vector_kind,
                       cosine_floor=float(config.params.get("cosine_floor", 0.0)))
        return factory

    def retrieve(self, ctx: RequestContext, n: int) -> Candidates:
        vector = ctx.user_vectors.get(self.vector_kind)
        if vector is None or n <= 0 or vector.shape[0] != self.index.dim:
            return Candidates.empty()
        delta = self.index.delta
        # Ask for extra: the user's own recent clicks come back near their own vector.
        rows, sims = self.index.search(vector[None, :], n + len(ctx.recent_clicks), delta)
        keep = (rows[0] >= 0) & (sims[0] >= self.cosine_floor)
        rows, sims = rows[0][keep][:n], sims[0][keep][:n]
        return Candidates.of(self.index.to_catalog(rows, delta), sims, np.zeros(len(rows), np.int32), sims,
                             [f"user_vector:{self.vector_kind}"])
