"""Cluster routes: what the user's clusters read (CF), what sits near their centres, and what
their merged profile points at. Memberships come with the request context (``ctx.clusters``),
the clusters' lists with its second round trip (``ctx.cluster_lists``); a user in several
clusters gets the nearest one at full weight, the others at ``secondary``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recall.domain import Candidates, ContextNeeds, RequestContext, top_n
from recall.index import VectorIndex
from recall.routes.base import RouteConfig
from recall.uservectors import TAG_ROUTE

# The user's own recent clicks top their clusters' lists and are filtered as seen: read this
# many more than the quota.
LIST_SPARE = 50


def user_clusters(ctx: RequestContext, schemes: tuple[str, ...] | None,
                  secondary: float) -> list[tuple[str, str, float]]:
    """(scheme, label, weight) of the user's clusters in ``schemes`` (None: every scheme)."""
    return [(scheme, label, 1.0 if rank == 0 else secondary)
            for scheme, labels in ctx.clusters.items() if schemes is None or scheme in schemes
            for rank, label in enumerate(labels)]


def fuse_weighted(rows: np.ndarray, parts: np.ndarray, raw: np.ndarray, seeds: np.ndarray,
                  labels: list[str], n: int) -> Candidates:
    """Sum each item's parts; its seed (and raw score) is the one that gave it most."""
    if not len(rows):
        return Candidates.empty()
    items, inverse = np.unique(rows, return_inverse=True)
    total = np.bincount(inverse, weights=parts).astype(np.float32)
    by_item_then_part = np.lexsort((-parts, inverse))
    first = by_item_then_part[np.r_[0, np.flatnonzero(np.diff(inverse[by_item_then_part])) + 1]]
    best = top_n(total, n)
    return Candidates.of(items[best], total[best], seeds[first][best], raw[first][best], labels)


@dataclass
class ClusterListRoute:
    """A list per cluster: ``cf`` (in-cluster real-time CF: articles the cluster's members
    clicked, time-decayed, updated on every click; read from Redis in the request's second
    round trip) or ``centre`` (articles nearest the cluster's centre, precomputed by the nightly
    job and held by the build). An item scores the sum over the user's clusters of weight *
    score / the list's top score (items scoring 0 or less, a centre's opposite, are left out)."""

    name: str
    list_kind: str
    quota: int = 200
    schemes: tuple[str, ...] | None = None
    secondary: float = 0.5
    models: dict = field(default_factory=dict)  # scheme -> ClusterModel (the centre lists)
    kind: str = "cluster"
    windows: tuple[float, ...] = ()
    needs: ContextNeeds = field(init=False)

    def __post_init__(self) -> None:
        from_redis = () if self.list_kind == "centre" else (self.list_kind,)
        self.needs = ContextNeeds(clusters=True, list_kinds=from_redis, list_depth=self.quota + LIST_SPARE)

    @classmethod
    def of(cls, list_kind: str):
        def factory(state, config: RouteConfig) -> ClusterListRoute | None:
            if not state.users.clusters:
                return None
            schemes = config.params.get("schemes")
            return cls(config.route, list_kind, config.quota, tuple(schemes) if schemes else None,
                       float(config.params.get("secondary_weight", 0.5)), state.users.clusters)
        return factory

    def list_of(self, ctx: RequestContext, scheme: str, label: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        if self.list_kind == "centre":
            model = self.models.get(scheme)
            return model.centre_rows.get(label, (None, None)) if model is not None else (None, None)
        return ctx.cluster_lists.get((self.list_kind, scheme, label), (None, None))

    def retrieve(self, ctx: RequestContext, n: int) -> Candidates:
        clusters = user_clusters(ctx, self.schemes, self.secondary)
        rows, parts, raw, seeds, labels = [], [], [], [], []
        for scheme, label, weight in clusters:
            items, scores = self.list_of(ctx, scheme, label)
            if items is None or not len(items) or scores[0] <= 0:
                continue
            positive = scores > 0  # lists are sorted
            rows.append(items[positive])
            parts.append(weight * scores[positive] / scores[0])
            raw.append(scores[positive] if self.list_kind == "centre" else np.full(positive.sum(), np.nan, np.float32))
            seeds.append(np.full(positive.sum(), len(labels), np.int32))
            labels.append(f"{scheme}:{label}")
        if not rows or n <= 0:
            return Candidates.empty()
        return fuse_weighted(np.concatenate(rows), np.concatenate(parts), np.concatenate(raw),
                             np.concatenate(seeds), labels, n)


@dataclass
class GroupProfileRoute:
    """user2vec on the group: each of the user's clusters' merged member profile (built nightly
    as a vector in tag2vec's space) searched in the live tag2vec index, so articles published
    since the build are found too."""

    name: str
    index: VectorIndex
    groups: dict[str, object]  # scheme -> ClusterModel
    schemes: tuple[str, ...] | None = None
    secondary: float = 0.5
    kind: str = "cluster"
    needs = ContextNeeds(clusters=True)
    windows: tuple[float, ...] = ()

    @classmethod
    def factory(cls, state, config: RouteConfig) -> GroupProfileRoute | None:
        index = state.indexes.get(TAG_ROUTE)
        groups = {s: m for s, m in state.users.clusters.items() if m.group_vectors is not None}
        if index is None or not len(index) or not groups:
            return None
        schemes = config.params.get("schemes")
        return cls(config.route, index, groups, tuple(schemes) if schemes else None,
                   float(config.params.get("secondary_weight", 0.5)))

    def retrieve(self, ctx: RequestContext, n: int) -> Candidates:
        queries = [(f"{scheme}:{label}", weight, self.groups[scheme].group_vector(label))
                   for scheme, label, weight in user_clusters(ctx, self.schemes, self.secondary)
                   if scheme in self.groups]
        queries = [(seed, w, v) for seed, w, v in queries if v is not None and v.shape[0] == self.index.dim]
        if not queries or n <= 0:
            return Candidates.empty()
        delta = self.index.delta
        rows, sims = self.index.search(np.stack([v for _, _, v in queries]), n + len(ctx.recent_clicks), delta)
        ctx.deadline.check()
        weights = np.array([w for _, w, _ in queries], np.float32)[:, None]
        seeds = np.broadcast_to(np.arange(len(queries), dtype=np.int32)[:, None], rows.shape)
        found = rows >= 0
        return fuse_weighted(self.index.to_catalog(rows[found], delta), (weights * sims)[found], sims[found],
                             seeds[found], [seed for seed, _, _ in queries], n)
