"""Item-to-item: neighbours of what the user just read, in one embedding space."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recall.domain import Candidates, RequestContext, top_n
from recall.index import LiveDelta, VectorIndex
from recall.routes.base import NO_NEEDS, RouteConfig


@dataclass
class EmbeddingI2IRoute:
    """Seeds are the user's most recent clicks that have a vector in this route's index.

    Each seed's neighbours come from the build's precomputed table (every article's nearest,
    above the build's floor) plus an exact search of the live delta (articles posted since);
    neighbours under the route's cosine floor are dropped. An item near several seeds scores the
    sum of its similarities to them, so what many recent clicks agree on outranks the neighbours
    of one stray click (which tie at the top otherwise: near-duplicates sit at cosine ~1 in every
    space). The candidate's seed and raw similarity are those of its closest seed.
    """

    name: str
    index: VectorIndex
    cosine_floor: float = 0.6
    seed_count: int = 10
    kind: str = "i2i"
    needs = NO_NEEDS
    windows: tuple[float, ...] = ()

    @classmethod
    def factory(cls, state, config: RouteConfig) -> EmbeddingI2IRoute | None:
        index = state.indexes.get(config.route)
        if index is None or not len(index) or index.neighbours is None:
            return None
        return cls(
            name=config.route,
            index=index,
            cosine_floor=float(config.params.get("cosine_floor", state.settings.default_cosine_floor)),
            seed_count=int(config.params.get("seed_count", state.settings.seed_count)),
        )

    def neighbours(self, seed_rows: list[int], delta: LiveDelta) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(index rows, cosines, seed position) of every seed's neighbours at or above the floor,
        the seed itself left out."""
        index, table = self.index, self.index.neighbours
        rows, sims, seeds = [], [], []
        positions = np.arange(len(seed_rows))
        seed_array = np.asarray(seed_rows, np.int64)
        from_table = seed_array < index.built
        if from_table.any():  # every built seed's table slice, gathered at once
            starts, ends = table.offsets[seed_array[from_table]], table.offsets[seed_array[from_table] + 1]
            lengths = ends - starts
            at = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
            rows.append(table.rows[at])
            sims.append(table.sims[at])
            seeds.append(np.repeat(positions[from_table], lengths).astype(np.int32))
        for position in positions[~from_table]:  # seeds posted since the build
            r, s = delta.neighbours[seed_rows[position] - index.built]
            rows.append(r)
            sims.append(s)
            seeds.append(np.full(len(r), position, np.int32))
        if len(delta):
            live = index.vectors_at(seed_rows, delta) @ delta.vectors.T
            for position, seed in enumerate(seed_rows):
                hit = np.flatnonzero(live[position] >= self.cosine_floor)
                hit = hit[index.built + hit != seed]
                rows.append(index.built + hit)
                sims.append(live[position, hit].astype(np.float32))
                seeds.append(np.full(len(hit), position, np.int32))
        rows, sims, seeds = np.concatenate(rows), np.concatenate(sims), np.concatenate(seeds)
        keep = sims >= self.cosine_floor
        return rows[keep], sims[keep], seeds[keep]

    def retrieve(self, ctx: RequestContext, n: int) -> Candidates:
        delta = self.index.delta
        seed_ids, seed_rows = [], []
        for item_id in ctx.recent_clicks:
            row = self.index.row(item_id, delta)
            if row is not None:
                seed_ids.append(item_id)
                seed_rows.append(row)
                if len(seed_rows) == self.seed_count:
                    break
        if not seed_rows or n <= 0:
            return Candidates.empty()
        rows, sims, seeds = self.neighbours(seed_rows, delta)
        ctx.deadline.check()
        return self.fuse(rows, sims, seeds, seed_ids, n, delta)

    def fuse(self, rows: np.ndarray, sims: np.ndarray, seeds: np.ndarray, seed_ids: list[str], n: int,
             delta: LiveDelta) -> Candidates:
        """Sum of similarities per item; the closest seed as provenance; the top ``n``."""
        if not len(rows):
            return Candidates.empty()
        items, inverse = np.unique(rows, return_inverse=True)
        total = np.bincount(inverse, weights=sims).astype(np.float32)
        by_item_then_sim = np.lexsort((-sims, inverse))  # each item's closest seed first
        first = by_item_then_sim[np.r_[0, np.flatnonzero(np.diff(inverse[by_item_then_sim])) + 1]]
        best = top_n(total, n)
        return Candidates.of(self.index.to_catalog(items[best], delta), total[best], seeds[first][best],
                             sims[first][best], seed_ids)

    def similar(self, item_id: str, n: int) -> Candidates:
        """Neighbours of one article (the /similar endpoint and the article inspector)."""
        delta = self.index.delta
        row = self.index.row(item_id, delta)
        if row is None:
            return Candidates.empty()
        rows, sims, seeds = self.neighbours([row], delta)
        return self.fuse(rows, sims, seeds, [item_id], n, delta)
