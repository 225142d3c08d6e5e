"""graph2vec: fastText skipgram over DeepWalk / Node2vec walks of the item graph (``encoders.graph``).

item2vec reads each user's clicks alone; the walks cross from one reader's session to another's
through the articles they share, so an article clicked by few readers still gets many contexts.
An article no session links to another one (isolated, or never clicked) has no vector: a zero
row, as item2vec gives it. Tokens and encoding are item2vec's.
"""

from __future__ import annotations

from collections.abc import Iterable

from encoders.base import TrainingCorpus
from encoders.graph import GraphWalks
from encoders.item2vec import Item2VecEncoder


class Graph2VecEncoder(GraphWalks, Item2VecEncoder):
    name = "graph2vec"
    # Walks repeat every node walks_per_node times at least: popular nodes are not the noise
    # fastText's subsampling is made for; the same light threshold as item2vec's.
    sample = 3e-3

    def __init__(self, dim: int = 64, epochs: int = 5, window: int = 5, min_count: int = 1,
                 threads: int = 2, seed: int = 7, buckets: int = 0, subwords: bool = False,
                 sample: float | None = None, session_gap_seconds: float = 1800.0,
                 half_life_days: float = 7.0, walks_per_node: int = 5, walk_length: int = 10,
                 p: float = 1.0, q: float = 1.0, max_tokens: int = 40_000_000):
        super().__init__(dim=dim, epochs=epochs, window=window, min_count=min_count, threads=threads,
                         seed=seed, buckets=buckets, subwords=subwords, sample=sample, max_tokens=max_tokens)
        self._walk_params(session_gap_seconds, half_life_days, walks_per_node, walk_length, p, q)

    def params(self) -> dict:
        return {**super().params(), **self.walk_params()}

    def sentences(self, corpus: TrainingCorpus) -> Iterable[list[str]]:
        graph, walks = self.graph_walks(corpus, self.seed)
        tokens = [f"i:{aid}" for aid in graph.nodes]
        for batch in walks:
            for walk in batch.tolist():
                yield [tokens[node] for node in walk]
