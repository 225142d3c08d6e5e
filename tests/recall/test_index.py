"""FAISS vector indexes (search, live adds, save/load) and versioned build directories."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from recall.index import BuildStore, NeighbourTable, VectorIndex


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


@pytest.fixture(scope="module")
def points() -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(60, 16)).astype(np.float32)
    return [f"i{n}" for n in range(len(vectors))], vectors


def hits(index: VectorIndex, queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
    """Search results as (id, cosine) per query, without the -1 padding."""
    rows, sims = index.search(queries, k)
    return [[(index.id_of(int(r)), float(s)) for r, s in zip(rr, ss) if r >= 0] for rr, ss in zip(rows, sims)]


def test_search_returns_neighbours_by_cosine_best_first(points):
    ids, vectors = points
    # Scaled copies: the index must compare directions, not lengths.
    index = VectorIndex.build(ids, vectors * np.linspace(0.1, 10, len(ids))[:, None])
    queries = vectors[:5] + 0.01
    cosines = (np.stack([unit(q) for q in queries]) @ np.stack([unit(v) for v in vectors]).T)
    for q, found in enumerate(hits(index, queries, 7)):
        assert len(found) == 7
        expected = [ids[i] for i in np.argsort(-cosines[q])[:7]]
        assert [i for i, _ in found] == expected
        assert [s for _, s in found] == pytest.approx(sorted(cosines[q], reverse=True)[:7], abs=1e-5)
    # k above the size is fine: the rest is padded with row -1 and similarity -inf.
    rows, sims = index.search(queries[:1], 10_000)
    assert rows.shape == (1, 10_000) and (rows[0] >= 0).sum() == len(ids)
    assert np.all(rows[0, len(ids):] == -1) and np.all(np.isneginf(sims[0, len(ids):]))
    rows, sims = index.search(queries[:2], 0)
    assert rows.shape == sims.shape == (2, 0)


def test_the_live_delta_is_searched_with_the_build(points):
    ids, vectors = points
    index = VectorIndex.build(ids[:50], vectors[:50])
    assert index.add(ids[50:], vectors[50:]) == 10
    assert len(index) == 60 and index.built == 50 and len(index.delta) == 10
    whole = VectorIndex.build(ids, vectors)
    queries = vectors[[3, 55, 20]] - 0.1
    ranked = [[i for i, _ in h] for h in hits(index, queries, 12)]
    assert ranked == [[i for i, _ in h] for h in hits(whole, queries, 12)]
    for a, b in zip(hits(index, queries, 12), hits(whole, queries, 12)):
        assert [s for _, s in a] == pytest.approx([s for _, s in b], abs=1e-5)
    assert index.row("i55") == 55 and index.id_of(55) == "i55" and "i55" in index
    np.testing.assert_allclose(index.vector("i55"), unit(vectors[55]), atol=1e-6)
    # A reader holding the old delta keeps seeing it whole: adds replace the delta, never edit it.
    held = index.delta
    index.add(["late"], vectors[[0]])
    assert len(held) == 10 and len(index.delta) == 11 and index.row("late", held) is None


def test_add_replaces_a_delta_vector_and_never_a_build_one(points):
    ids, vectors = points
    index = VectorIndex.build(ids, vectors)
    target = vectors[40]
    assert hits(index, target[None, :], 1)[0][0][0] == "i40"
    assert index.add(["new"], target[None, :] * 2) == 1
    top2 = hits(index, target[None, :], 2)[0]
    assert {i for i, _ in top2} == {"new", "i40"} and min(s for _, s in top2) == pytest.approx(1.0, abs=1e-5)
    # A second post of a delta article replaces its vector: still one row for it.
    assert index.add(["new"], vectors[[7]]) == 1
    assert len(index) == len(ids) + 1
    np.testing.assert_allclose(index.vector("new"), unit(vectors[7]), atol=1e-6)
    assert sum(i == "new" for i, _ in hits(index, target[None, :], len(index))[0]) == 1
    assert dict(hits(index, target[None, :], len(index))[0])["new"] < 0.99
    # An article the build holds keeps its build vector until the next build.
    assert index.add(["i3"], target[None, :]) == 0
    np.testing.assert_allclose(index.vector("i3"), unit(vectors[3]), atol=1e-6)
    assert len(index) == len(ids) + 1


def test_zero_rows_are_skipped(points):
    ids, vectors = points
    vectors = vectors[:10].copy()
    vectors[[2, 7]] = 0
    index = VectorIndex.build(ids[:10], vectors)
    assert len(index) == 8 and "i2" not in index.row_of and index.vector("i7") is None
    assert index.manifest["count"] == 8
    found = {i for i, _ in hits(index, vectors[:1], 100)[0]}
    assert found == set(ids[:10]) - {"i2", "i7"}
    # A zero row for a known id keeps its vector rather than erasing it; a new one is not added.
    assert index.add(["i0", "blank"], np.zeros((2, vectors.shape[1]))) == 0
    np.testing.assert_allclose(index.vector("i0"), unit(vectors[0]), atol=1e-6)
    assert "blank" not in index and len(index) == 8


def test_save_then_load_gives_identical_results(points, tmp_path):
    ids, vectors = points
    index = VectorIndex.build(ids, vectors, route="r", encoder="e")
    index.compute_neighbours(depth=10, floor=0.1)
    index.build_ann(threshold=20, min_recall=0.9)
    index.save(tmp_path / "idx")
    index.add(["new"], vectors[[9]] + 0.5)  # the live delta is never written into a build
    loaded = VectorIndex.load(tmp_path / "idx")
    assert loaded.ids == index.ids and loaded.dim == index.dim and len(loaded) == len(ids)
    assert loaded.manifest["route"] == "r" and loaded.manifest["count"] == len(ids)
    assert loaded.ann is not None and loaded.ann.ef_search == index.manifest["ann"]["efSearch"]
    queries = vectors[:8] - 0.2
    fresh = VectorIndex.build(ids, vectors)  # the build part, searched exactly
    fresh.ann = index.ann
    assert hits(loaded, queries, 12) == hits(fresh, queries, 12)
    np.testing.assert_array_equal(loaded.vector("i5"), index.vector("i5"))
    assert loaded.vector("new") is None
    for row in (0, 17, 59):
        for a, b in zip(loaded.neighbours.of(row), index.neighbours.of(row)):
            np.testing.assert_array_equal(a, b)
    assert (loaded.neighbours.depth, loaded.neighbours.floor) == (10, pytest.approx(0.1))
    # The loaded index takes live adds of its own.
    assert loaded.add(["other"], vectors[[1]]) == 1
    assert hits(loaded, vectors[[1]], 2)[0][1][1] == pytest.approx(1.0, abs=1e-5)


def test_neighbour_tables_hold_each_rows_nearest_above_the_floor(points):
    ids, vectors = points
    index = VectorIndex.build(ids, vectors)
    table = index.compute_neighbours(depth=5, floor=0.2)
    matrix = np.stack([index.vector(i) for i in ids])
    cos = matrix @ matrix.T
    np.fill_diagonal(cos, -np.inf)  # a row is never its own neighbour
    for row in range(len(ids)):
        rows, sims = table.of(row)
        expected = [r for r in np.argsort(-cos[row])[:5] if cos[row, r] >= 0.2]
        assert rows.tolist() == expected
        np.testing.assert_allclose(sims, cos[row, expected], atol=1e-5)
    assert table.offsets[-1] == len(table.rows) == len(table.sims)
    # Articles added later get their neighbours among the build's rows the same way.
    index.add(["late"], vectors[[4]] + 0.05)
    rows, sims = index.delta.neighbours[0]
    late = unit(vectors[4] + 0.05)
    expected = [r for r in np.argsort(-(matrix @ late))[:5] if matrix[r] @ late >= 0.2]
    assert rows.tolist() == expected and sims == pytest.approx(matrix[expected] @ late, abs=1e-5)


def test_a_table_of_row_shards_is_the_table_of_all_rows(points):
    ids, vectors = points
    index = VectorIndex.build(ids, vectors)
    whole = NeighbourTable.compute(index.vectors, depth=5, floor=0.2)
    shards = [NeighbourTable.compute(index.vectors, 5, 0.2, lo, lo + 25) for lo in range(0, len(ids), 25)]
    assert [len(s.offsets) - 1 for s in shards] == [25, 25, 10]
    joined = NeighbourTable.concatenate(shards)
    for name in ("offsets", "rows", "sims"):
        np.testing.assert_allclose(getattr(joined, name), getattr(whole, name), atol=1e-6)
    assert (joined.depth, joined.floor) == (5, 0.2)


def test_hnsw_only_above_the_threshold_and_as_good_as_asked(points):
    ids, vectors = points
    index = VectorIndex.build(ids, vectors)
    assert index.build_ann(threshold=len(ids), min_recall=0.9) == {"ann": "exact", "count": len(ids)}
    assert index.ann is None
    info = index.build_ann(threshold=10, min_recall=0.95)
    assert info["ann"] == "hnsw" and info["recall_at_100"] >= 0.95 and index.ann is not None
    exact = VectorIndex.build(ids, vectors)
    queries = vectors[:10] + 0.05
    found = [{i for i, _ in h} for h in hits(index, queries, 10)]
    truth = [{i for i, _ in h} for h in hits(exact, queries, 10)]
    assert np.mean([len(f & t) / 10 for f, t in zip(found, truth)]) >= 0.9


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


def test_start_never_touches_another_runs_staging_and_sweep_removes_leftovers(tmp_path):
    store = BuildStore(tmp_path / "builds")
    stage(store, "v1")
    running = store.start("v2")  # a job still writing its build (or one that died: start cannot tell)
    (running / "manifest.json").write_text("half")
    assert store.active_version() == "v1"
    assert "v2" not in store.versions() and ".tmp-v2" not in store.versions()

    staging = store.start("v3")
    assert running.exists() and (running / "manifest.json").read_text() == "half"
    store.publish(staging)
    assert store.active_version() == "v3" and store.versions() == ["v1", "v3"]

    # A run that fails removes its own staging directory, and only that.
    mine = store.start("v4")
    store.discard(mine)
    assert not mine.exists() and running.exists()
    # Holding the nightly lock, a run sweeps what dead runs left; published builds stay.
    (store.root / ".ACTIVE.v9").write_text("v9")
    assert store.sweep() == [".ACTIVE.v9", ".tmp-v2"]
    assert not running.exists() and store.versions() == ["v1", "v3"] and store.active_version() == "v3"


def write_build(root, version: str, points, *, encoders=("enc",)) -> object:
    """A small complete build folder (as the nightly job writes one) under ``root``."""
    ids, vectors = points
    directory = root / version
    index = VectorIndex.build(ids, vectors, route="r", encoder="enc", encoder_version="1")
    index.compute_neighbours(depth=5, floor=0.0)
    index.save(directory / "indexes" / "r")
    for name in encoders:
        (directory / "models" / name).mkdir(parents=True)
        (directory / "models" / name / "model.bin").write_bytes(b"weights")
    (directory / "catalog.jsonl").write_text("".join(f'{{"id": "{i}"}}\n' for i in ids))
    manifest = {"version": version, "routes": {"r": index.manifest}, "encoders": {"enc": "1"},
                "counts": {"articles": len(ids), "index:r": len(index)}}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def test_verify_checks_a_build_against_its_manifest(tmp_path, points):
    store = BuildStore(tmp_path / "builds")
    good = write_build(store.root, ".tmp-v1", points)
    manifest = json.loads((good / "manifest.json").read_text())
    manifest["version"] = "v1"
    (good / "manifest.json").write_text(json.dumps(manifest))
    assert store.verify(good) == []

    def broken(name: str, damage) -> list[str]:
        directory = write_build(store.root, name, points)
        damage(directory)
        return store.verify(directory)

    # The fault seen in production: the manifest lists an encoder whose model folder is missing.
    assert broken("a", lambda d: shutil.rmtree(d / "models" / "enc")) == \
        ["encoder enc: model folder models/enc missing or empty"]
    assert "index r: files missing" in broken("b", lambda d: (d / "indexes" / "r" / "vectors.npy").unlink())[0]
    assert "neighbour" in broken("c", lambda d: shutil.rmtree(d / "indexes" / "r" / "neighbours"))[0]
    assert "catalog.jsonl unreadable" in broken("d", lambda d: (d / "catalog.jsonl").unlink())[0]
    assert broken("e", lambda d: (d / "catalog.jsonl").write_text('{"id": "x"}\n')) == \
        [f"catalog holds 1 articles, the manifest {len(points[0])}"]
    assert "manifest.json unreadable" in broken("f", lambda d: (d / "manifest.json").write_text("{"))[0]

    # A truncated vectors file (a half-copied build) is caught without reading it all.
    def truncate(d):
        path = d / "indexes" / "r" / "vectors.npy"
        path.write_bytes(path.read_bytes()[:200])
    assert "index r: files missing or unreadable" in broken("g", truncate)[0]

    def miscount(d):
        manifest = json.loads((d / "manifest.json").read_text())
        manifest["counts"]["index:r"] = 3
        (d / "manifest.json").write_text(json.dumps(manifest))
    assert "vectors.npy holds 60 rows, but {'counts': 3}" in broken("h", miscount)[0]

    def extra_index(d):
        shutil.copytree(d / "indexes" / "r", d / "indexes" / "stray")
    assert broken("i", extra_index) == ["index stray is on disk but not in the manifest"]
    renamed = write_build(store.root, "j", points)
    os.replace(renamed, store.root / "k")
    assert store.verify(store.root / "k") == ["manifest names version 'j', the folder 'k'"]


def test_a_rejected_build_is_set_aside_and_never_a_published_version(tmp_path, points):
    store = BuildStore(tmp_path / "builds")
    stage(store, "v1")
    staging = store.start("v2")
    rejected = store.reject(staging, ["encoder enc: model folder models/enc missing or empty"])
    assert rejected.name == ".rejected-v2" and not staging.exists()
    assert "models/enc missing" in (rejected / "REJECTED.txt").read_text()
    assert store.versions() == ["v1"] and store.active_version() == "v1"
    store.reject(store.start("v3"), ["x"])
    assert store.sweep() == [".rejected-v2"]  # the newest rejected build is kept for inspection
    assert (store.root / ".rejected-v3").exists()


@pytest.mark.parametrize("keep", [1, 2, 3])
def test_prune_keeps_the_newest_versions(tmp_path, keep):
    store = BuildStore(tmp_path / "builds", keep=keep)
    versions = [f"2026010{n}T000000-x" for n in range(1, 6)]
    for version in versions:
        stage(store, version)
    assert store.versions() == versions[-keep:]
    assert store.active_version() == versions[-1]


def test_hnsw_finds_its_way_among_identical_vectors():
    """Articles with the same top tags share one vector: 6,000 rows, 60 distinct vectors. A graph
    of copies could not reach recall 0.98 at any efSearch (0.80 at 4,096 measured); one node per
    distinct vector does, cheaply, and every copy is returned."""
    rng = np.random.default_rng(3)
    distinct = rng.normal(size=(60, 16)).astype(np.float32)
    vectors = distinct[rng.integers(0, 60, 6000)]
    index = VectorIndex.build([f"a{i}" for i in range(6000)], vectors)
    info = index.build_ann(threshold=1000, min_recall=0.98)
    assert info["recall_at_100"] >= 0.98 and info["efSearch"] <= 256 and info["distinct_vectors"] == 60
    rows, sims = index.search(vectors[:1], 50)
    assert (rows[0] >= 0).all() and np.allclose(sims[0], sims[0][0])  # 50 copies of the same vector
