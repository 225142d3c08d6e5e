"""The clustering algorithms on planted data with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from recall import clustering
from recall.clustering import ClusterModel


def planted_blobs(groups: int, per_group: int, dim: int = 16, noise: float = 0.08, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(groups, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    truth = np.repeat(np.arange(groups), per_group)
    x = centres[truth] + noise * rng.normal(size=(len(truth), dim))
    return x.astype(np.float32), truth, centres.astype(np.float32)


def test_kmeans_recovers_planted_groups():
    x, truth, _ = planted_blobs(6, 80)
    fit = clustering.fit_kmeans(x, 6, seed=1)
    predicted = [row[0] for row in clustering.assign(x, fit.centres, max_memberships=1)]
    assert adjusted_rand_score(truth, predicted) > 0.95


def test_elbow_finds_the_planted_number_of_groups():
    x, _, _ = planted_blobs(8, 60, noise=0.05)
    k, curve = clustering.choose_k(x, [2, 4, 6, 8, 12, 16, 24, 32], seed=1)
    assert k == 8
    assert [kk for kk, _ in curve] == [2, 4, 6, 8, 12, 16, 24, 32]
    inertias = [i for _, i in curve]
    assert inertias[0] > inertias[3] > 0


def test_elbow_of_a_clear_knee_and_of_short_curves():
    assert clustering.elbow([(2, 100.0), (4, 10.0), (8, 8.0), (16, 7.0)]) == 4
    assert clustering.elbow([(2, 5.0), (4, 1.0)]) == 4


def test_choose_k_caps_candidates_by_the_number_of_users():
    x, _, _ = planted_blobs(2, 10)
    _, curve = clustering.choose_k(x, [2, 8, 64])
    assert max(k for k, _ in curve) <= len(x) // 5


def test_a_user_between_two_centres_belongs_to_both():
    centres = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], np.float32)
    users = np.array([[0.7, 0.7], [1.0, 0.05]], np.float32)
    both, one = clustering.assign(users, centres, max_memberships=2, ratio=1.15)
    assert sorted(both) == [0, 1]
    assert one == [0]


def test_matching_gives_shuffled_centres_their_old_labels():
    _, _, centres = planted_blobs(5, 1)
    old_labels = ["c0", "c1", "c2", "c3", "c4"]
    order = [3, 0, 4, 1, 2]
    moved = centres[order] + 0.01
    assert clustering.match_labels(centres, old_labels, moved) == [old_labels[i] for i in order]


def test_matching_names_extra_centres_with_unused_labels():
    _, _, centres = planted_blobs(4, 1)
    labels = clustering.match_labels(centres[:2], ["c0", "c1"], centres)
    assert labels[:2] == ["c0", "c1"]
    assert len(set(labels)) == 4
    assert clustering.match_labels(None, [], centres[:3]) == ["c0", "c1", "c2"]


def test_label_stability():
    assert clustering.label_stability({"a": "c1", "b": "c2"}, {"a": "c1", "b": "c3", "new": "c1"}) == 0.5
    assert clustering.label_stability({}, {"a": "c1"}) is None


def test_rule_clusters_respect_the_size_threshold_by_backing_off():
    interests = {}
    for n in range(30):
        interests[f"big{n}"] = ["football", "tennis"]
    for n in range(8):
        interests[f"mid{n}"] = ["football", "golf"]  # too few for "football>golf"...
    for n in range(5):
        interests[f"cricket{n}"] = ["football", "cricket"]  # ...or for "football>cricket"...
    for n in range(3):
        interests[f"rare{n}"] = ["knitting", "chess"]  # too few at any depth
    labels = clustering.rule_labels(interests, top_k=2, min_size=10)
    assert labels["big0"] == "football>tennis"
    assert labels["mid0"] == labels["cricket0"] == "football"  # ...so both merge into "football"
    assert labels["rare0"] == clustering.OTHER
    sizes = {}
    for label in labels.values():
        sizes[label] = sizes.get(label, 0) + 1
    assert all(n >= 10 for label, n in sizes.items() if label != clustering.OTHER)


def test_online_rule_assignment_takes_the_longest_known_prefix():
    known = {"football>tennis", "football"}
    assert clustering.rule_label_of(["football", "tennis"], known, 2) == "football>tennis"
    assert clustering.rule_label_of(["football", "golf"], known, 2) == "football"
    assert clustering.rule_label_of(["chess"], known, 2) == clustering.OTHER


def test_cluster_model_round_trip(tmp_path):
    x, _, centres = planted_blobs(3, 20)
    model = ClusterModel("kmeans-tag", "kmeans", "tag", ["c0", "c1", "c2"], "tag2vec", centres,
                         group_vectors=centres * 2, meta={"k": 3})
    model.save(tmp_path)
    loaded = ClusterModel.load(tmp_path, "kmeans-tag")
    assert loaded.labels == model.labels and loaded.meta == {"k": 3}
    np.testing.assert_array_equal(loaded.centres, centres)
    assert loaded.assign(x[:1]) == model.assign(x[:1])
    np.testing.assert_array_equal(loaded.group_vector("c1"), centres[1] * 2)
    assert loaded.group_vector("nope") is None


@pytest.mark.parametrize("sizes", [[5, 1, 3], []])
def test_size_distribution(sizes):
    d = clustering.size_distribution(sizes)
    assert d["clusters"] == len(sizes)
    if sizes:
        assert (d["min"], d["max"], d["median"]) == (1, 5, 3.0)
