"""The item graph of click sessions and the walks over it (encoders/graph.py): edges, weights and
decay, sessions, what cannot be linked, walks that follow only edges with the right odds, and
Node2vec's p and q changing the walks as the second-order formula says."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from encoders.base import NothingToLearn, TrainingCorpus
from encoders.eges import EGESEncoder
from encoders.graph import Walker, build_item_graph
from encoders.graph2vec import Graph2VecEncoder

DAY = 86400.0
GROUPS, ITEMS_PER_GROUP = 6, 12


def weight(graph, a: str, b: str) -> float:
    row, col = graph.nodes.index(a), graph.nodes.index(b)
    return float(graph.adjacency[row, col])


def planted_corpus(readers: int = 300, clicks: int = 8, seed: int = 0) -> TrainingCorpus:
    """Each reader clicks ``clicks`` articles of one group, one a minute."""
    rng = np.random.default_rng(seed)
    sequences, times = {}, {}
    for user in range(readers):
        group = user % GROUPS
        sequences[f"u{user}"] = [f"g{group}_{i}" for i in rng.choice(ITEMS_PER_GROUP, clicks)]
        times[f"u{user}"] = [1e9 + 60.0 * k for k in range(clicks)]
    return TrainingCorpus(click_sequences=sequences, click_times=times)


def test_consecutive_clicks_in_a_session_make_decayed_undirected_edges():
    corpus = TrainingCorpus(click_sequences={
        "ann": ["a", "b", "b", "c"],  # b twice in a row: no self edge
        "bob": ["b", "a"],  # a-b again, one half-life before the last click
        "cat": ["c", "d"],  # further apart than a session: no edge
        "dan": ["e"],  # one click: isolated
    }, click_times={
        "ann": [10 * DAY, 10 * DAY + 60, 10 * DAY + 120, 10 * DAY + 180],
        "bob": [3 * DAY, 3 * DAY + 60],
        "cat": [5 * DAY, 6 * DAY],
        "dan": [DAY],
    })
    graph = build_item_graph(corpus, session_gap_seconds=1800, half_life_days=7)
    assert sorted(graph.nodes) == ["a", "b", "c"]
    assert graph.isolated == 2  # d and e
    assert weight(graph, "a", "b") == pytest.approx(1.0 + 0.5, rel=1e-3)  # ann's, plus bob's decayed
    assert weight(graph, "b", "a") == weight(graph, "a", "b")
    assert weight(graph, "b", "c") == pytest.approx(1.0)
    assert weight(graph, "a", "c") == 0
    assert graph.adjacency.diagonal().sum() == 0
    metrics = graph.metrics()
    assert (metrics["graph_nodes"], metrics["graph_edges"], metrics["graph_isolated"]) == (3, 2, 2)
    assert metrics["graph_degree_max"] == 2


def test_a_corpus_without_times_links_every_consecutive_pair_at_weight_one():
    graph = build_item_graph(TrainingCorpus(click_sequences={"u": ["a", "b", "a"]}), 1800, 7)
    assert weight(graph, "a", "b") == 2.0


@pytest.mark.parametrize("encoder", [Graph2VecEncoder, EGESEncoder])
def test_a_world_without_sessions_has_nothing_to_learn(encoder):
    lonely = TrainingCorpus(click_sequences={"u1": ["a"], "u2": ["b", "b"], "u3": []})
    with pytest.raises(NothingToLearn, match="no session links two articles"):
        encoder().fit(lonely)
    with pytest.raises(NothingToLearn):
        encoder().fit(TrainingCorpus())
    assert build_item_graph(lonely, 1800, 7).isolated == 2


def test_walks_only_cross_edges_that_exist():
    graph = build_item_graph(planted_corpus(readers=60, clicks=5), 1800, 7)
    for p, q in ((1.0, 1.0), (0.3, 3.0)):
        walker = Walker(graph.adjacency, p, q)
        walks = np.concatenate(list(walker.walks(3, 15, seed=1, batch=50)))
        assert walks.shape == (3 * len(graph.nodes), 15)
        assert sorted(np.bincount(walks[:, 0])) == [3] * len(graph.nodes)  # every node starts 3 walks
        a, b = walks[:, :-1].ravel().astype(np.int64), walks[:, 1:].ravel().astype(np.int64)
        dense = graph.adjacency.toarray()
        assert (dense[a, b] > 0).all()
        assert walker.adjacent(a, b).all()


def test_walks_recover_planted_communities():
    graph = build_item_graph(planted_corpus(), 1800, 7)
    group = np.array([int(aid.split("_")[0][1:]) for aid in graph.nodes])
    walks = np.concatenate(list(Walker(graph.adjacency).walks(5, 20, seed=2)))
    assert (group[walks] == group[walks[:, :1]]).all()  # no session crosses groups here


def test_deepwalk_steps_follow_edge_weights():
    star = sparse.csr_matrix(np.array([[0, 1, 2, 7], [1, 0, 0, 0], [2, 0, 0, 0], [7, 0, 0, 0]], float))
    walker = Walker(star)
    steps = walker.neighbours_by_weight(np.zeros(100_000, np.int64), np.random.default_rng(0))
    np.testing.assert_allclose(np.bincount(steps, minlength=4)[1:] / len(steps), [0.1, 0.2, 0.7], atol=0.01)


def return_rate(adjacency: sparse.csr_matrix, p: float, q: float) -> float:
    walks = np.concatenate(list(Walker(adjacency, p, q).walks(400, 12, seed=3)))
    return float((walks[:, 2:] == walks[:, :-2]).mean())


def test_node2vec_p_sets_how_often_walks_return():
    """On a complete graph of 6 nodes every other neighbour is adjacent to the previous node:
    P(return) = (1/p) / (1/p + 4)."""
    complete = sparse.csr_matrix(np.ones((6, 6)) - np.eye(6))
    for p in (0.25, 1.0, 4.0):
        assert return_rate(complete, p, 1.0) == pytest.approx((1 / p) / (1 / p + 4), abs=0.01)


def test_node2vec_q_sets_how_often_walks_move_outward():
    """On a ring every step either returns (1/p) or moves outward (1/q): P(return) = q / (p + q) at p = 1."""
    n = 10
    ring = sparse.csr_matrix((np.ones(2 * n), (np.r_[np.arange(n), np.arange(n)],
                                                np.r_[(np.arange(n) + 1) % n, (np.arange(n) - 1) % n])))
    for q in (0.25, 1.0, 4.0):
        assert return_rate(ring, 1.0, q) == pytest.approx(q / (1 + q), abs=0.01)
