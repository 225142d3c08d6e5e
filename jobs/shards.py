"""An i2i route's neighbour table, searched by item shards as Ray tasks.

Each shard is one task searching its rows ``[lo, hi)`` against the whole index; the driver
concatenates the shards in order into the table ``NeighbourTable.compute`` makes of all rows in
one process (equal up to ties: a tie at the depth's edge may keep either article).

The index's vectors go to the object store once (``ray.put``) rather than being read from the
staged ``vectors.npy``: the index is saved with its table, after this step, and a worker on the
driver's node reads the put array in shared memory without a copy (another node fetches it once).
"""

from __future__ import annotations

import numpy as np
import ray

from jobs.raywork import map_tasks
from recall.index import NeighbourTable, VectorIndex


def neighbour_shard(vectors: np.ndarray, lo: int, hi: int, depth: int, floor: float) -> NeighbourTable:
    return NeighbourTable.compute(vectors, depth, floor, lo, hi)


def compute_neighbours(index: VectorIndex, depth: int, floor: float, shard_rows: int
                       ) -> tuple[NeighbourTable, list[str]]:
    """The index's neighbour table (set as ``index.neighbours``) from shards of ``shard_rows``
    rows, and the ids of the nodes that searched them."""
    vectors = ray.put(np.ascontiguousarray(index.vectors, dtype=np.float32))
    shards = [(vectors, lo, min(lo + shard_rows, index.built), depth, floor)
              for lo in range(0, index.built, shard_rows)] or [(vectors, 0, 0, depth, floor)]
    tables, nodes = map_tasks(neighbour_shard, shards)
    index.neighbours = NeighbourTable.concatenate(tables)
    return index.neighbours, nodes
