"""The nightly on a real two-node Ray cluster (``tests/jobs/raycluster.py``: both nodes on
loopback, started here and stopped at the end), run as ``recall nightly`` with
``RECALL_RAY_ADDRESS`` in a process of its own (pytest's process holds the session's local Ray).

Given the models of a local run (reused through the training key: fastText's hogwild threads
are not deterministic, so a retrained model would differ), the cluster builds the same
embeddings, indexes and neighbour tables, with work on both nodes; and a worker node lost in the
middle of a run leaves either a finished build (its tasks retried on the head) or a cleanly
failed run with the previous build serving. Real SQLite, Redis, fastText, FAISS and Ray."""

from __future__ import annotations

import shutil
import signal

import numpy as np
import pytest
from rich.console import Console

from jobs.ingest.synthetic import ingest_synthetic
from jobs.nightly import run_nightly
from recall.index import BuildStore, VectorIndex
from recall.online import OnlineStore
from recall.serving import ServingState
from tests.jobs.raycluster import ROOT, LoopbackCluster
from tests.jobs.test_nightly_faults import (  # noqa: F401 (spawn is a fixture)
    LOCKED_EXIT,
    RUN_TIMEOUT,
    assert_complete_build,
    cli_env,
    output,
    recent_world,
    runs,
    spawn,
    wait_until,
)

SIM_TOLERANCE = 1e-5  # float32 cosines of the same vectors, summed in another order
# The cluster runs cut this small world into many small Ray tasks (read parts, neighbour shards,
# user partitions) and embed through Ray Data, as a large world would: there is work for both
# nodes, and the results must not depend on the cut.
SPREAD = {"RECALL_NIGHTLY_PARTITION_ARTICLES": "100", "RECALL_NIGHTLY_PARTITION_USERS": "10",
          "RECALL_NEIGHBOUR_SHARD_ROWS": "100", "RECALL_USER_PARTITION_USERS": "10",
          "RECALL_EMBED_DATASET_MIN": "0"}


@pytest.fixture(scope="module")
def cluster():
    with LoopbackCluster() as running:
        yield running


@pytest.fixture
def db(sqlite_engine):
    ingest_synthetic(sqlite_engine, recent_world(), Console(quiet=True))
    return sqlite_engine


def cached_embeddings(var_dir, encoder: str) -> dict[str, np.ndarray]:
    (path,) = (var_dir / "cache" / "embeddings" / encoder).glob("*.npz")
    data = np.load(path)
    return dict(zip(data["ids"].tolist(), data["vectors"]))


def assert_same_vectors(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> None:
    assert sorted(ours) == sorted(theirs)
    np.testing.assert_allclose(np.stack([ours[i] for i in sorted(ours)]),
                               np.stack([theirs[i] for i in sorted(ours)]), atol=SIM_TOLERANCE)


def neighbours_by_id(index: VectorIndex) -> dict[str, dict[str, float]]:
    """Each article's neighbours as {neighbour id: cosine} (rows differ when the order differs)."""
    table = index.neighbours
    return {index.ids[row]: {index.ids[n]: float(s) for n, s in zip(*table.of(row))}
            for row in range(index.built)}


def assert_same_neighbours(ours: VectorIndex, theirs: VectorIndex) -> None:
    """Equal up to ties: the same cosines row by row, and the same neighbours except among
    those tied (within float error) with the last one kept, where either may have been cut."""
    a, b = neighbours_by_id(ours), neighbours_by_id(theirs)
    assert sorted(a) == sorted(b)
    for item in a:
        np.testing.assert_allclose(sorted(a[item].values()), sorted(b[item].values()), atol=SIM_TOLERANCE)
        if not a[item]:
            continue
        last = min(a[item].values())
        for neighbour in a[item].keys() ^ b[item].keys():
            assert abs((a[item].get(neighbour) or b[item][neighbour]) - last) <= SIM_TOLERANCE, (item, neighbour)
        for neighbour in a[item].keys() & b[item].keys():
            assert abs(a[item][neighbour] - b[item][neighbour]) <= SIM_TOLERANCE, (item, neighbour)


def test_workers_on_both_nodes_import_this_checkout(cluster):
    found = cluster.probe()
    assert sorted(found) == cluster.node_ids and len(found) == 2
    assert all(path.startswith(str(ROOT)) for path in found.values()), found


def test_the_cluster_builds_what_the_local_run_built(settings, db, online, redis_client, cluster, spawn):
    local = run_nightly(settings, db, online)

    # The cluster run continues from a copy of the local build (so its models are reused), with
    # no embedding cache (so it embeds everything again) and a Redis namespace of its own.
    there = settings.model_copy(update={"var_dir": settings.var_dir.parent / "var-cluster",
                                        "redis_prefix": f"{settings.redis_prefix}cluster:"})
    shutil.copytree(settings.var_dir, there.var_dir, ignore=shutil.ignore_patterns("cache", "*.lock"))
    try:
        proc = spawn({**cli_env(there, db), **cluster.driver_env, **SPREAD}, "cluster")
        assert proc.wait(timeout=RUN_TIMEOUT) == 0, output(proc)
    finally:
        OnlineStore(redis_client, there).flush_namespace()

    (run_id, rows), = [(r, rows) for r, rows in runs(db).items() if r != local.run_id]
    assert {row.status for row in rows} <= {"ok", "skipped"}, [(r.step, r.status, r.error) for r in rows]
    steps = {row.step: row.metrics for row in rows}
    assert steps["train:tag2vec"]["reused_from"] == local.version
    assert steps["embed:tag2vec"]["encoded"] == steps["embed:tag2vec"]["items"] > 0
    # Ray work ran on both nodes (the steps' nodes together), and no step names another node.
    nodes = {node for metrics in steps.values() for node in metrics.get("nodes", [])}
    assert sorted(nodes) == cluster.node_ids, steps

    ours, theirs = BuildStore(settings.builds_dir), BuildStore(there.builds_dir)
    assert theirs.active_version() == run_id and theirs.verify(theirs.root / run_id) == []
    assert_same_vectors(cached_embeddings(settings.var_dir, "tag2vec"), cached_embeddings(there.var_dir, "tag2vec"))
    built = ServingState.load(there).manifest["routes"]
    assert sorted(built) == sorted(ServingState.load(settings).manifest["routes"])
    for route in built:
        mine = VectorIndex.load(ours.root / local.version / "indexes" / route)
        yours = VectorIndex.load(theirs.root / run_id / "indexes" / route)
        assert_same_vectors(dict(zip(mine.ids, mine.vectors)), dict(zip(yours.ids, yours.vectors)))
        assert (mine.neighbours is None) == (yours.neighbours is None), route
        if mine.neighbours is not None:
            assert_same_neighbours(mine, yours)


def test_a_worker_node_lost_mid_run_retries_or_fails_cleanly(settings, db, online, spawn):
    good = run_nightly(settings, db, online)
    store = BuildStore(settings.builds_dir)
    with LoopbackCluster() as doomed:  # a cluster of its own: this one loses its worker node
        proc = spawn({**cli_env(settings, db), **doomed.driver_env, **SPREAD}, "lost-node")
        wait_until(doomed.worker.running_tasks, RUN_TIMEOUT, "the run's work on the worker node", (proc,))
        doomed.worker.raylet().send_signal(signal.SIGKILL)
        code = proc.wait(timeout=RUN_TIMEOUT)
        assert doomed.worker.process.wait(timeout=60) != 0  # its node went down with the raylet

    (lost, rows), = [(run, rows) for run, rows in runs(db).items() if run != good.run_id]
    assert "running" not in {row.status for row in rows}, [(r.step, r.status) for r in rows]
    if code == 0:  # retried: every task the node took ran again on the head
        assert {row.status for row in rows} <= {"ok", "skipped"}
        assert_complete_build(settings, lost)
    else:  # failed cleanly: recorded, nothing published, the previous build serving
        assert code != LOCKED_EXIT and "failed" in {row.status for row in rows}, output(proc)
        assert store.active_version() == good.version and store.versions() == [good.version]
        state = ServingState.load(settings)
        assert state.version == state.requested == good.version and state.load_error is None
