"""graph2vec on a planted-community click graph: neighbours share their community far above
chance, articles outside the graph are zero rows, and the graph's size is in the training
metrics. The encoder contract is checked for every encoder in test_common.py."""

from __future__ import annotations

import numpy as np
import pytest

from encoders.graph2vec import Graph2VecEncoder
from recall.domain import ArticleRecord
from tests.encoders.test_graph import GROUPS, ITEMS_PER_GROUP, planted_corpus


def neighbour_purity(vectors: np.ndarray, groups: np.ndarray, k: int = 5) -> float:
    """Share of each row's k nearest other rows (cosine) in the row's own group."""
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = np.argsort(-similarity, axis=1)[:, :k]
    return float((groups[nearest] == groups[:, None]).mean())


def community_probes() -> tuple[list[ArticleRecord], np.ndarray]:
    ids = [(g, f"g{g}_{i}") for g in range(GROUPS) for i in range(ITEMS_PER_GROUP)]
    return [ArticleRecord(id=aid) for _, aid in ids], np.array([g for g, _ in ids])


@pytest.fixture(scope="module")
def fitted() -> Graph2VecEncoder:
    # Some readers wander across groups: communities, not disconnected islands.
    corpus = planted_corpus()
    rng = np.random.default_rng(5)
    for user in range(30):
        corpus.click_sequences[f"wanderer{user}"] = [f"g{g}_{rng.integers(ITEMS_PER_GROUP)}"
                                                     for g in rng.integers(GROUPS, size=4)]
    return Graph2VecEncoder(dim=16, epochs=5, threads=1).fit(corpus)


def test_vectors_recover_planted_communities(fitted):
    probes, groups = community_probes()
    vectors = fitted.encode(probes)
    assert (np.linalg.norm(vectors, axis=1) > 0).all()
    assert neighbour_purity(vectors, groups) > 0.8  # chance: 11/71, about 0.15


def test_articles_outside_the_graph_are_zero_rows(fitted):
    vectors = fitted.encode([ArticleRecord(id="never-clicked", category="news", tags=(("g0", 1.0),))])
    assert not vectors.any()


def test_fit_reports_the_graph_it_walked(fitted):
    metrics = fitted.training_metrics_
    assert metrics["graph_nodes"] == GROUPS * ITEMS_PER_GROUP
    assert metrics["walks"] == 5 * GROUPS * ITEMS_PER_GROUP
    assert 0 < metrics["graph_degree_p50"] <= metrics["graph_degree_max"]
