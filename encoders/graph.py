"""The item graph of all users' click sessions, and DeepWalk / Node2vec walks over it.

The graph: two articles are linked when one user clicked them one after the other within
``session_gap_seconds``; an edge weighs the sum over such pairs of ``0.5 ** (age / half_life)``,
the age of the later click counted back from the corpus' last click (the build's cutoff is
after it: the corpus holds events before the cutoff only). Edges are undirected and a click of
the same article twice in a row is no edge. A corpus without click times (a hand-made one)
links every consecutive pair at weight 1. The graph is CSR (``scipy.sparse``), rows sorted.

The walks advance every walker one step at a time as numpy arrays, never a Python loop per step:
a weighted neighbour is drawn by binary search in the cumulated edge weights of its row. Node2vec
(return ``p``, in-out ``q``) is the exact second-order walk by rejection sampling (as in
KnightKing and PecanPy): a neighbour drawn by weight is kept with probability
``alpha / max(alpha)``, alpha being 1/p back to the previous node, 1 to a node adjacent to it and
1/q elsewhere; the rejected walkers draw again, all of them at once. p = q = 1 is DeepWalk.

Why not a library: ``pecanpy`` (numba) pins numpy 1.26 against the platform's numpy 2;
``pycleora`` embeds by iterated neighbour averaging and makes no walks; ``csrgraph`` (numba and
pandas) walks Node2vec 3x slower than this and compiles for 30-80 s in every new process
(README, "Graph routes: graph2vec and EGES").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from encoders.base import NothingToLearn, TrainingCorpus


@dataclass(frozen=True)
class ItemGraph:
    nodes: list[str]  # article ids, one per row; every node has at least one edge
    adjacency: sparse.csr_matrix  # symmetric, float64 weights, sorted indices
    isolated: int  # clicked articles no session links to another one (no node: nothing to walk)

    @property
    def degrees(self) -> np.ndarray:
        return np.diff(self.adjacency.indptr)

    def metrics(self) -> dict[str, float | int]:
        """The graph's size, as the nightly records it in ``job_runs``."""
        degrees = self.degrees
        p50, p90, p99 = (np.percentile(degrees, [50, 90, 99]) if len(degrees) else (0, 0, 0))
        return {"graph_nodes": len(self.nodes), "graph_edges": int(self.adjacency.nnz // 2),
                "graph_isolated": self.isolated,
                "graph_degree_p50": float(p50), "graph_degree_p90": float(p90),
                "graph_degree_p99": float(p99), "graph_degree_max": int(degrees.max(initial=0))}


def build_item_graph(corpus: TrainingCorpus, session_gap_seconds: float, half_life_days: float) -> ItemGraph:
    ids: dict[str, int] = {}
    sources, targets, times, gaps = [], [], [], []
    for user, clicks in corpus.click_sequences.items():
        if len(clicks) < 2:
            for aid in clicks:
                ids.setdefault(aid, len(ids))
            continue
        rows = np.fromiter((ids.setdefault(aid, len(ids)) for aid in clicks), np.int64, len(clicks))
        stamps = corpus.click_times.get(user)
        stamps = np.asarray(stamps, np.float64) if stamps is not None and len(stamps) == len(clicks) \
            else np.full(len(clicks), np.nan)
        sources.append(rows[:-1])
        targets.append(rows[1:])
        times.append(stamps[1:])
        gaps.append(np.diff(stamps))
    names = list(ids)
    if not sources:
        return ItemGraph([], sparse.csr_matrix((0, 0)), isolated=len(names))
    src, dst, at, gap = map(np.concatenate, (sources, targets, times, gaps))
    # No times (NaN): one session, no decay.
    keep = (src != dst) & ~(gap > session_gap_seconds)
    timed = ~np.isnan(at)
    age = np.where(timed, (at[timed].max() if timed.any() else 0.0) - at, 0.0)
    weight = np.power(0.5, age / (half_life_days * 86400.0))
    n = len(names)
    directed = sparse.coo_matrix((weight[keep], (src[keep], dst[keep])), shape=(n, n)).tocsr()
    both = (directed + directed.T).tocsr()
    both.sum_duplicates()
    both.sort_indices()
    linked = np.flatnonzero(np.diff(both.indptr) > 0)
    adjacency = both[linked][:, linked].tocsr()
    adjacency.sort_indices()
    return ItemGraph([names[i] for i in linked], adjacency, isolated=n - len(linked))


class Walker:
    """Weighted first- and second-order random walks over an ``ItemGraph``'s adjacency."""

    def __init__(self, adjacency: sparse.csr_matrix, p: float = 1.0, q: float = 1.0):
        self.indptr = adjacency.indptr.astype(np.int64)
        self.indices = adjacency.indices.astype(np.int64)
        self.cumulated = np.cumsum(adjacency.data, dtype=np.float64)
        self.p, self.q = p, q
        n = adjacency.shape[0]
        # (row, column) pairs as one sorted key: "is x a neighbour of v" is one searchsorted.
        self.n = n
        self.edge_keys = np.repeat(np.arange(n, dtype=np.int64), np.diff(self.indptr)) * n + self.indices

    def neighbours_by_weight(self, nodes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One neighbour of each node, drawn in proportion to edge weights."""
        start, end = self.indptr[nodes], self.indptr[nodes + 1]
        below = np.where(start > 0, self.cumulated[start - 1], 0.0)
        total = self.cumulated[end - 1] - below
        drawn = np.searchsorted(self.cumulated, below + rng.random(len(nodes)) * total, side="right")
        return self.indices[np.clip(drawn, start, end - 1)]

    def adjacent(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        keys = a * self.n + b
        at = np.minimum(np.searchsorted(self.edge_keys, keys), len(self.edge_keys) - 1)
        return self.edge_keys[at] == keys

    def step(self, previous: np.ndarray, current: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The next node of every walker (``previous`` = -1 for a walker's first step)."""
        chosen = self.neighbours_by_weight(current, rng)
        if self.p == 1.0 and self.q == 1.0:
            return chosen
        ceiling = max(1.0 / self.p, 1.0, 1.0 / self.q)
        pending = np.flatnonzero(previous >= 0)
        while len(pending):
            back, candidate = previous[pending], chosen[pending]
            alpha = np.where(candidate == back, 1.0 / self.p,
                             np.where(self.adjacent(back, candidate), 1.0, 1.0 / self.q))
            rejected = pending[rng.random(len(pending)) * ceiling >= alpha]
            chosen[rejected] = self.neighbours_by_weight(current[rejected], rng)
            pending = rejected
        return chosen

    def walks(self, walks_per_node: int, length: int, seed: int, batch: int = 200_000) -> Iterator[np.ndarray]:
        """(walkers, length) int32 node arrays, every node starting ``walks_per_node`` walks, in
        batches of at most ``batch`` walkers (memory stays flat at 161k nodes)."""
        rng = np.random.default_rng(seed)
        starts = np.concatenate([rng.permutation(self.n) for _ in range(walks_per_node)]) if self.n else \
            np.zeros(0, np.int64)
        for first in range(0, len(starts), batch):
            current = starts[first:first + batch]
            out = np.empty((len(current), length), np.int32)
            out[:, 0] = current
            previous = np.full(len(current), -1, np.int64)
            for column in range(1, length):
                current, previous = self.step(previous, current, rng), current
                out[:, column] = current
            yield out


class GraphWalks:
    """The graph and walk hyper-parameters graph2vec and eges share, and the walks they read.

    ``fit`` sets ``training_metrics_``: the graph's size and the walks made, which the nightly
    records with the training step.
    """

    name: str
    training_metrics_: dict

    def _walk_params(self, session_gap_seconds: float, half_life_days: float, walks_per_node: int,
                     walk_length: int, p: float, q: float) -> None:
        self.session_gap_seconds = session_gap_seconds
        self.half_life_days = half_life_days
        self.walks_per_node = walks_per_node
        self.walk_length = walk_length
        self.p = p
        self.q = q

    def walk_params(self) -> dict:
        return {"session_gap_seconds": self.session_gap_seconds, "half_life_days": self.half_life_days,
                "walks_per_node": self.walks_per_node, "walk_length": self.walk_length,
                "p": self.p, "q": self.q}

    def graph_walks(self, corpus: TrainingCorpus, seed: int) -> tuple[ItemGraph, Iterator[np.ndarray]]:
        """The corpus' item graph and its walks (node rows); raises ``NothingToLearn`` when no
        session links two articles (a world without sessions)."""
        graph = build_item_graph(corpus, self.session_gap_seconds, self.half_life_days)
        if not graph.nodes:
            raise NothingToLearn(f"{self.name}: no session links two articles ({graph.isolated} clicked "
                                 "articles, all isolated)")
        self.training_metrics_ = {**graph.metrics(), "walks": len(graph.nodes) * self.walks_per_node,
                                  "walk_length": self.walk_length}
        walker = Walker(graph.adjacency, self.p, self.q)
        return graph, walker.walks(self.walks_per_node, self.walk_length, seed)
