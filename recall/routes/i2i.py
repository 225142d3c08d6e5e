"""Item-to-item: neighbours of what the user just read, in one embedding space."""

from __future__ import annotations

from dataclasses import dataclass

from recall.domain import Candidate, RequestContext
from recall.index import VectorIndex
from recall.routes.base import RouteConfig


@dataclass
class EmbeddingI2IRoute:
    """Seeds are the user's most recent clicks that have a vector in this route's index.

    Every seed asks the index for neighbours; neighbours under the cosine floor are dropped. An
    item near several seeds scores the sum of its similarities to them, so what many recent
    clicks agree on outranks the neighbours of one stray click (which tie at the top otherwise:
    near-duplicates sit at cosine ~1 in every space). The candidate's seed and raw similarity
    are those of its closest seed.
    """

    name: str
    index: VectorIndex
    cosine_floor: float = 0.6
    seed_count: int = 10
    kind: str = "i2i"

    @classmethod
    def factory(cls, state, config: RouteConfig) -> EmbeddingI2IRoute | None:
        index = state.indexes.get(config.route)
        if index is None or not len(index):
            return None
        return cls(
            name=config.route,
            index=index,
            cosine_floor=float(config.params.get("cosine_floor", state.settings.default_cosine_floor)),
            seed_count=int(config.params.get("seed_count", state.settings.seed_count)),
        )

    def seeds(self, ctx: RequestContext) -> list[str]:
        return [i for i in ctx.recent_clicks if i in self.index.row_of][: self.seed_count]

    def retrieve(self, ctx: RequestContext, n: int) -> list[Candidate]:
        seeds = self.seeds(ctx)
        if not seeds or n <= 0:
            return []
        vectors = [self.index.vector(s) for s in seeds]
        # Ask for extra neighbours: the seeds themselves and already-read items come back too.
        hits = self.index.search(vectors, n + len(seeds))
        total: dict[str, float] = {}
        closest: dict[str, tuple[float, str]] = {}
        for seed, neighbours in zip(seeds, hits):
            for item_id, sim in neighbours:
                if sim < self.cosine_floor:
                    break  # hits are sorted: the rest are lower still
                if item_id == seed:
                    continue
                total[item_id] = total.get(item_id, 0.0) + sim
                if sim > closest.get(item_id, (-2.0, ""))[0]:
                    closest[item_id] = (sim, seed)
        ranked = sorted(total.items(), key=lambda kv: -kv[1])[:n]
        return [Candidate(i, score, self.name, closest[i][1], closest[i][0]) for i, score in ranked]

    def similar(self, item_id: str, n: int) -> list[Candidate]:
        """Neighbours of one article (the /similar endpoint and the article inspector)."""
        vector = self.index.vector(item_id)
        if vector is None:
            return []
        return [
            Candidate(i, s, self.name, item_id, s)
            for i, s in self.index.search(vector[None, :], n + 1)[0]
            if i != item_id and s >= self.cosine_floor
        ][:n]
