"""User-to-item: the user's own vector (written to Redis by the nightly job) against an index."""

from __future__ import annotations

from dataclasses import dataclass

from recall.domain import Candidate, RequestContext
from recall.index import VectorIndex
from recall.routes.base import RouteConfig


@dataclass
class UserVectorRoute:
    name: str
    index: VectorIndex
    vector_kind: str
    cosine_floor: float = 0.0
    kind: str = "u2i"

    @classmethod
    def factory(cls, state, config: RouteConfig) -> UserVectorRoute | None:
        index = state.indexes.get(config.route)
        if index is None or not len(index):
            return None
        return cls(config.route, index, vector_kind=config.route,
                   cosine_floor=float(config.params.get("cosine_floor", 0.0)))

    def retrieve(self, ctx: RequestContext, n: int) -> list[Candidate]:
        vector = ctx.user_vectors.get(self.vector_kind)
        if vector is None or n <= 0 or vector.shape[0] != self.index.dim:
            return []
        seed = f"user_vector:{self.vector_kind}"
        return [Candidate(item_id, sim, self.name, seed, sim)
                for item_id, sim in self.index.search(vector[None, :], n)[0] if sim >= self.cosine_floor]
