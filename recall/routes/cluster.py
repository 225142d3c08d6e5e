"""Cluster routes: what the user's clusters read (CF), what sits near their centres, and what
their merged profile points at. Memberships come with the request context (``ctx.clusters``);
a user in several clusters gets the nearest one at full weight, the others at ``secondary``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recall.domain import Candidate, RequestContext
from recall.index import VectorIndex
from recall.routes.base import RouteConfig
from recall.uservectors import TAG_ROUTE


def user_clusters(ctx: RequestContext, schemes: tuple[str, ...] | None,
                  secondary: float) -> list[tuple[str, str, float]]:
    """(scheme, label, weight) of the user's clusters in ``schemes`` (None: every scheme)."""
    return [(scheme, label, 1.0 if rank == 0 else secondary)
            for scheme, labels in ctx.clusters.items() if schemes is None or scheme in schemes
            for rank, label in enumerate(labels)]


def fuse_lists(route: str, lists: dict[tuple[str, str], list[tuple[str, float]]],
               weights: dict[tuple[str, str], float], n: int, keep_raw: bool) -> list[Candidate]:
    """Sum over the clusters of weight * score / the list's top score (items scoring 0 or less,
    a centre's opposite, are left out); the seed is the cluster that gave the item most."""
    total: dict[str, float] = {}
    best: dict[str, tuple[float, str, float]] = {}
    for cluster, items in lists.items():
        if not items or items[0][1] <= 0:
            continue
        top = items[0][1]
        for item, score in items:
            if score <= 0:
                break  # lists are sorted
            part = weights[cluster] * score / top
            total[item] = total.get(item, 0.0) + part
            if part > best.get(item, (0.0, "", 0.0))[0]:
                best[item] = (part, ":".join(cluster), score)
    ranked = sorted(total.items(), key=lambda kv: -kv[1])[:n]
    return [Candidate(i, s, route, best[i][1], best[i][2] if keep_raw else None) for i, s in ranked]


@dataclass
class ClusterListRoute:
    """A list per cluster kept in Redis: ``cf`` (in-cluster real-time CF: articles the
    cluster's members clicked, time-decayed, updated on every click) or ``centre`` (articles
    nearest the cluster's centre, precomputed by the nightly job)."""

    name: str
    list_kind: str
    schemes: tuple[str, ...] | None = None
    secondary: float = 0.5
    kind: str = "cluster"

    @classmethod
    def of(cls, list_kind: str):
        def factory(state, config: RouteConfig) -> ClusterListRoute | None:
            if not state.users.clusters:
                return None
            schemes = config.params.get("schemes")
            return cls(config.route, list_kind, tuple(schemes) if schemes else None,
                       float(config.params.get("secondary_weight", 0.5)))
        return factory

    def retrieve(self, ctx: RequestContext, n: int) -> list[Candidate]:
        clusters = user_clusters(ctx, self.schemes, self.secondary)
        if not clusters or n <= 0:
            return []
        weights = {(s, label): w for s, label, w in clusters}
        # Ask for extra: the user's own clicks top their clusters' lists and are filtered as seen.
        lists = ctx.cluster_lists(self.list_kind, list(weights), n + len(ctx.recent_clicks))
        return fuse_lists(self.name, lists, weights, n, keep_raw=self.list_kind == "centre")


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

    @classmethod
    def factory(cls, state, config: RouteConfig) -> GroupProfileRoute | None:
        index = state.indexes.get(TAG_ROUTE)
        groups = {s: m for s, m in state.users.clusters.items() if m.group_vectors is not None}
        if index is None or not len(index) or not groups:
            return None
        schemes = config.params.get("schemes")
        return cls(config.route, index, groups, tuple(schemes) if schemes else None,
                   float(config.params.get("secondary_weight", 0.5)))

    def retrieve(self, ctx: RequestContext, n: int) -> list[Candidate]:
        queries = [(f"{scheme}:{label}", weight, self.groups[scheme].group_vector(label))
                   for scheme, label, weight in user_clusters(ctx, self.schemes, self.secondary)
                   if scheme in self.groups]
        queries = [(seed, w, v) for seed, w, v in queries if v is not None and v.shape[0] == self.index.dim]
        if not queries or n <= 0:
            return []
        hits = self.index.search(np.stack([v for _, _, v in queries]), n + len(ctx.recent_clicks))
        total: dict[str, float] = {}
        best: dict[str, tuple[float, str, float]] = {}
        for (seed, weight, _), group in zip(queries, hits):
            for item, sim in group:
                total[item] = total.get(item, 0.0) + weight * sim
                if weight * sim > best.get(item, (-2.0, "", 0.0))[0]:
                    best[item] = (weight * sim, seed, sim)
        ranked = sorted(total.items(), key=lambda kv: -kv[1])[:n]
        return [Candidate(i, s, self.name, best[i][1], best[i][2]) for i, s in ranked]
