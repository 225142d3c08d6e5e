"""Neighbour tables searched by item shards as Ray tasks (the session's Ray) against the table
of one process, on random vectors with planted duplicates (ties the two may break apart)."""

from __future__ import annotations

import numpy as np
import ray

from jobs.shards import compute_neighbours
from recall.index import NeighbourTable, VectorIndex


def test_a_sharded_table_equals_the_one_process_table_up_to_ties():
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(700, 16)).astype(np.float32)
    vectors[600:] = vectors[rng.choice(600, 100)]  # exact copies: ties at every depth
    index = VectorIndex.build([f"i{n}" for n in range(len(vectors))], vectors)
    single = NeighbourTable.compute(index.vectors, depth=20, floor=0.1)
    table, nodes = compute_neighbours(index, depth=20, floor=0.1, shard_rows=128)  # 6 shards
    assert index.neighbours is table and nodes == [ray.get_runtime_context().get_node_id()]
    np.testing.assert_array_equal(table.offsets, single.offsets)
    np.testing.assert_allclose(table.sims, single.sims, atol=1e-5)
    # Where the two differ, they picked different articles of equal similarity: each is a true
    # neighbour at that cosine.
    rows = np.repeat(np.arange(len(vectors)), np.diff(table.offsets))
    true = np.einsum("ij,ij->i", index.vectors[rows], index.vectors[table.rows])
    np.testing.assert_allclose(table.sims, true, atol=1e-5)
    assert not np.any(table.rows == rows)
    assert np.mean(table.rows == single.rows) > 0.9
