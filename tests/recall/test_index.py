"""FAISS vector indexes (search, live adds, save/load) and versioned build directories."""

from __future__ import annotations

import numpy as np
import pytest

from recall.index import BuildStore, VectorIndex


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


@pytest.fixture(scope="module")
def points() -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(60, 16)).astype(np.float32)
    return [f"i{n}" for n in range(len(vectors))], vectors


def test_search_returns_neighbours_by_cosine_best_first(points):
    ids, vectors = points
    # Scaled copies: the index must compare directions, not lengths.
    index = VectorIndex.build(ids, vectors * np.linspace(0.1, 10, len(ids))[:, None])
    queries = vectors[:5] + 0.01
    cosines = (np.stack([unit(q) for q in queries]) @ np.stack([unit(v) for v in vectors]).T)
    for q, hits in enumerate(index.search(queries, 7)):
        assert len(hits) == 7
        expected = [ids[i] for i in np.argsort(-cosines[q])[:7]]
        assert [i for i, _ in hits] == expected
        assert [s for _, s in hits] == pytest.approx(sorted(cosines[q], reverse=True)[:7], abs=1e-5)
    assert len(index.search(queries[:1], 10_000)[0]) == len(ids)  # k above the size is fine
    assert index.search(queries[:2], 0) == [[], []]


def test_add_replaces_the_vector_of_a_known_id(points):
    ids, vectors = points
    index = VectorIndex.build(ids, vectors)
    target = vectors[40]
    assert index.search(target[None, :], 1)[0][0][0] == "i40"
    assert index.add(["i3"], target[None, :] * 2) == 1
    assert len(index) == len(ids)  # replaced, not appended
    np.testing.assert_allclose(index.vector("i3"), unit(target), atol=1e-6)
    top2 = index.search(target[None, :], 2)[0]
    assert {i for i, _ in top2} == {"i3", "i40"} and min(s for _, s in top2) == pytest.approx(1.0, abs=1e-5)
    # i3's old vector is gone: searching for it no longer finds i3 at cosine 1.
    old_hits = dict(index.search(vectors[3][None, :], len(ids))[0])
    assert old_hits["i3"] < 0.99
    assert sum(i == "i3" for i, _ in index.search(target[None, :], len(ids))[0]) == 1


def test_zero_rows_are_skipped(points):
    ids, vectors = points
    vectors = vectors[:10].copy()
    vectors[[2, 7]] = 0
    index = VectorIndex.build(ids[:10], vectors)
    assert len(index) == 8 and "i2" not in index.row_of and index.vector("i7") is None
    assert index.manifest["count"] == 8
    found = {i for i, _ in index.search(vectors[:1], 100)[0]}
    assert found == set(ids[:10]) - {"i2", "i7"}
    # A zero row for a known id keeps its vector rather than erasing it.
    assert index.add(["i0"], np.zeros((1, vectors.shape[1]))) == 0
    np.testing.assert_allclose(index.vector("i0"), unit(vectors[0]), atol=1e-6)


def test_save_then_load_gives_identical_results(points, tmp_path):
    ids, vectors = points
    index = VectorIndex.build(ids, vectors, route="r", encoder="e")
    index.add(["i5", "new"], vectors[[9, 10]] + 0.5)  # live adds are saved too
    index.save(tmp_path / "idx")
    loaded = VectorIndex.load(tmp_path / "idx")
    assert loaded.ids == index.ids and loaded.dim == index.dim
    assert loaded.manifest["route"] == "r" and loaded.manifest["count"] == len(index)
    queries = vectors[:8] - 0.2
    assert loaded.search(queries, 12) == index.search(queries, 12)
    np.testing.assert_array_equal(loaded.vector("i5"), index.vector("i5"))
    # The loaded index keeps accepting replacements.
    loaded.add(["i0"], vectors[[1]])
    assert len(loaded) == len(index)
    assert loaded.search(vectors[[1]], 2)[0][1][1] == pytest.approx(1.0, abs=1e-5)


def stage(store: BuildStore, version: str, marker: str = "") -> str:
    staging = store.start(version)
    (staging / "manifest.json").write_text(marker or version)
    return store.publish(staging)


def test_publish_switches_active_to_a_complete_build(tmp_path):
    store = BuildStore(tmp_path / "builds")
    assert store.active_version() is None and store.active_dir() is None and store.versions() == []
    staging = store.start("v1")
    (staging / "manifest.json").write_text("one")
    # Staging is invisible until published.
    assert store.active_version() is None and store.versions() == []
    assert store.publish(staging) == "v1"
    assert store.active_version() == "v1"
    assert (store.active_dir() / "manifest.json").read_text() == "one"
    assert not staging.exists()

    stage(store, "v2", "two")
    assert store.active_version() == "v2"
    assert (store.active_dir() / "manifest.json").read_text() == "two"
    # The pointer is swapped by rename: no temporary pointer file is left beside it.
    assert sorted(p.name for p in store.root.iterdir() if p.is_file()) == ["ACTIVE"]


def test_leftover_staging_is_removed_by_the_next_start_and_never_served(tmp_path):
    store = BuildStore(tmp_path / "builds")
    stage(store, "v1")
    crashed = store.start("v2")  # a job that died before publishing
    (crashed / "manifest.json").write_text("half")
    assert store.active_version() == "v1"
    assert "v2" not in store.versions() and ".tmp-v2" not in store.versions()

    staging = store.start("v3")
    assert not crashed.exists() and staging.exists()
    assert store.active_version() == "v1"
    store.publish(staging)
    assert store.active_version() == "v3" and store.versions() == ["v1", "v3"]


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_prune_keeps_the_newest_versions(tmp_path, keep):
    store = BuildStore(tmp_path / "builds", keep=keep)
    versions = [f"2026010{n}T000000-x" for n in range(1, 6)]
    for version in versions:
        stage(store, version)
    assert store.versions() == versions[-keep:]
    assert store.active_version() == versions[-1]
