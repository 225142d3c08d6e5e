"""user_lstm on the synthetic world: item vectors planted per topic, click sequences from the
world's click events. The user vector must find a user's next click and interests in the item
space, and keep the encoder contract (unit or zero rows, batch independence, save/load, version)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from encoders.base import NothingToLearn
from encoders.user_lstm import ENCODE_BATCH, ClickLSTMUserEncoder
from recall.synthetic import generate

DIM = 32
TOPIC_NOISE = 0.6  # per-article deviation from its topic's direction, relative to it
NO_VECTOR_EVERY = 10  # every tenth article has no item vector: its clicks give zero rows
TOP_K = 10


@dataclass
class ClickWorld:
    item_vectors: np.ndarray  # (articles, DIM), zero rows for articles without a vector
    item_topics: np.ndarray  # (articles,) topic names
    clicks: dict[str, list[int]]  # user -> rows of item_vectors clicked, oldest first
    interests: dict[str, list[str]]  # user -> the topics they mostly click

    def sequence(self, rows: list[int]) -> np.ndarray:
        return self.item_vectors[rows].reshape(-1, DIM)


@pytest.fixture(scope="module")
def world() -> ClickWorld:
    synthetic = generate(articles=600, users=300, days=5, seed=3)
    rng = np.random.default_rng(0)
    topics = sorted(set(synthetic.article_topic.values()))
    directions = dict(zip(topics, rng.normal(size=(len(topics), DIM))))
    item_ids = [a.id for a in synthetic.articles]
    vectors = np.stack([directions[synthetic.article_topic[aid]] for aid in item_ids])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors += TOPIC_NOISE * rng.normal(size=vectors.shape) / np.sqrt(DIM)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[::NO_VECTOR_EVERY] = 0.0
    row_of = {aid: row for row, aid in enumerate(item_ids)}
    clicks: dict[str, list[int]] = {}
    for event in synthetic.events:  # ordered by time
        if event.kind == "click":
            clicks.setdefault(event.user_id, []).append(row_of[event.article_id])
    item_topics = np.array([synthetic.article_topic[aid] for aid in item_ids])
    return ClickWorld(vectors.astype(np.float32), item_topics, clicks, synthetic.user_interests)


@pytest.fixture(scope="module")
def held_out(world) -> tuple[list[np.ndarray], list[int]]:
    """Every user's clicks but the last (to train on and encode), and the rows of the last clicks
    that have a vector and follow at least one click with a vector (to predict; -1 for the rest)."""
    prefixes, targets = [], []
    for rows in world.clicks.values():
        prefixes.append(world.sequence(rows[:-1]))
        has_history = prefixes[-1].any(axis=1).any()
        targets.append(rows[-1] if has_history and world.item_vectors[rows[-1]].any() else -1)
    return prefixes, targets


@pytest.fixture(scope="module")
def trained(held_out) -> ClickLSTMUserEncoder:
    return ClickLSTMUserEncoder(dim=DIM, hidden=32, epochs=10).fit(held_out[0])


@dataclass
class Quality:
    hit_rate: float  # share of held-out last clicks among the TOP_K items nearest the user vector
    beats_random: float  # share of held-out last clicks nearer the user than a random other item
    interest_precision: float  # share of the TOP_K nearest items in the user's interests


def quality(encoder: ClickLSTMUserEncoder, world: ClickWorld, held_out) -> Quality:
    prefixes, targets = held_out
    user_vectors = encoder.encode(prefixes)
    has_vector = np.flatnonzero(world.item_vectors.any(axis=1))
    scores = user_vectors @ world.item_vectors[has_vector].T
    nearest = has_vector[np.argsort(-scores, axis=1)[:, :TOP_K]]
    in_interests = [np.isin(world.item_topics[nearest[u]], world.interests[user]).mean()
                    for u, user in enumerate(world.clicks) if user_vectors[u].any()]

    users = np.flatnonzero(np.array(targets) >= 0)
    target_columns = np.searchsorted(has_vector, np.array(targets)[users])
    target_scores = scores[users, target_columns]
    hits = (scores[users] > target_scores[:, None]).sum(axis=1) < TOP_K
    others = np.random.default_rng(1).integers(len(has_vector) - 1, size=len(users))
    others += others >= target_columns  # never the target itself
    beats_random = target_scores > scores[users, others]
    return Quality(float(hits.mean()), float(beats_random.mean()), float(np.mean(in_interests)))


def test_trained_user_vectors_find_the_next_click_and_the_interests(trained, world, held_out):
    trained_quality = quality(trained, world, held_out)
    mean_of_clicks = quality(ClickLSTMUserEncoder(dim=DIM, epochs=0).fit(held_out[0]), world, held_out)
    items = world.item_vectors.any(axis=1)
    random_hit_rate = TOP_K / items.sum()
    random_interest_precision = np.mean([np.isin(world.item_topics[items], topics).mean()
                                         for topics in world.interests.values()])
    print(f"\ntrained {trained_quality}\nmean of clicks {mean_of_clicks}\nrandom: hit rate "
          f"{random_hit_rate:.3f}, beats random 0.5, interest precision {random_interest_precision:.3f}")
    assert trained_quality.hit_rate > 2 * random_hit_rate, trained_quality
    assert trained_quality.beats_random > 0.7, trained_quality
    assert trained_quality.interest_precision > 3 * random_interest_precision, trained_quality


def test_untrained_network_is_the_mean_of_the_recent_clicks_with_a_vector(held_out, world):
    untrained = ClickLSTMUserEncoder(dim=DIM, max_clicks=4, epochs=0).fit(held_out[0])
    rows = world.sequence([1, 0, 2, 3, 10, 4, 5])  # 0 and 10 have no vector
    mean = world.sequence([2, 3, 4, 5]).mean(axis=0)
    np.testing.assert_allclose(untrained.encode([rows])[0], mean / np.linalg.norm(mean), atol=1e-6)


def test_rows_are_unit_or_zero_for_users_without_usable_clicks(trained, world):
    rows = trained.encode([world.sequence([1, 2, 3]), np.zeros((0, DIM), np.float32),
                           world.sequence([0, 10]), world.sequence([4])])
    assert rows.shape == (4, DIM) and rows.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rows[[0, 3]], axis=1), 1.0, atol=1e-5)
    assert not rows[[1, 2]].any()
    assert trained.encode([]).shape == (0, DIM)


def test_a_user_vector_ignores_clicks_without_a_vector_and_older_than_max_clicks(trained, world):
    clicks = [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13]
    with_gaps = [0, *clicks[:6], 10, 20, *clicks[6:]]  # 0, 10 and 20 have no vector
    last_ten = world.sequence(clicks[-trained.max_clicks:])
    np.testing.assert_allclose(trained.encode([world.sequence(with_gaps)]), trained.encode([last_ten]), atol=1e-6)


def test_encoding_is_deterministic_and_independent_of_the_batch(trained, held_out):
    users = held_out[0] * 4
    assert len(users) > ENCODE_BATCH  # the last copy straddles two internal encode batches
    batch = trained.encode(users)
    np.testing.assert_array_equal(trained.encode(users), batch)
    singles = np.vstack([trained.encode([seq]) for seq in held_out[0][:100]])
    np.testing.assert_allclose(batch[:100], singles, atol=1e-6)
    np.testing.assert_allclose(batch[-len(held_out[0]):][:100], singles, atol=1e-6)


def test_fit_is_reproducible_and_version_follows_data_and_hyper_parameters(held_out):
    small = dict(dim=DIM, hidden=16, epochs=1)
    encoder = ClickLSTMUserEncoder(**small)
    assert encoder.version == "untrained"
    first = encoder.fit(held_out[0])
    again = ClickLSTMUserEncoder(**small).fit(held_out[0])
    assert again.version == first.version
    np.testing.assert_array_equal(again.encode(held_out[0]), first.encode(held_out[0]))
    assert ClickLSTMUserEncoder(**{**small, "lr": 0.01}).fit(held_out[0]).version != first.version
    assert ClickLSTMUserEncoder(**small).fit(held_out[0][1:]).version != first.version


def test_save_then_load_gives_identical_vectors(trained, held_out, tmp_path: Path):
    trained.save(tmp_path / "model")
    loaded = ClickLSTMUserEncoder.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.encode(held_out[0]), trained.encode(held_out[0]))
    assert (loaded.name, loaded.version, loaded.params()) == ("user_lstm", trained.version, trained.params())


def test_no_user_with_two_clicks_with_a_vector_is_nothing_to_learn(world):
    sequences = [world.sequence([1]), world.sequence([0, 2, 10]), np.zeros((0, DIM), np.float32)]
    with pytest.raises(NothingToLearn, match="no user has two clicks"):
        ClickLSTMUserEncoder(dim=DIM).fit(sequences)


def test_misuse_is_a_clear_error(world):
    with pytest.raises(RuntimeError, match="not fitted"):
        ClickLSTMUserEncoder(dim=DIM).encode([world.sequence([1, 2])])
    with pytest.raises(ValueError, match="expected"):
        ClickLSTMUserEncoder(dim=DIM + 1).fit([world.sequence([1, 2])])
