"""item2vec and media2vec on a planted world (readers click inside one of ten groups) and on the
real MIND histories. The encoder contract is checked for every encoder in test_common.py."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from encoders.base import TrainingCorpus
from encoders.item2vec import Item2VecEncoder, Media2VecEncoder
from recall.domain import ArticleRecord

GROUPS, ITEMS_PER_GROUP, MEDIA_PER_GROUP = 10, 10, 2


def group_of(item_id: str) -> int:
    return int(item_id.split("_")[0][1:])


@pytest.fixture(scope="module")
def planted() -> TrainingCorpus:
    """Each reader clicks 15 items of one group in random order; every group has two media.

    Plus one item clicked exactly once, and one never clicked.
    """
    rng = np.random.default_rng(3)
    articles = {
        f"g{g}_{i}": ArticleRecord(id=f"g{g}_{i}", media_id=f"Group {g} Media {i % MEDIA_PER_GROUP}")
        for g in range(GROUPS) for i in range(ITEMS_PER_GROUP)
    }
    articles["once"] = ArticleRecord(id="once", media_id="Rare Media")
    articles["never"] = ArticleRecord(id="never", media_id="Group 0 Media 0")
    clicks = {}
    for user in range(400):
        group = rng.integers(GROUPS)
        clicks[f"u{user}"] = [f"g{group}_{i}" for i in rng.choice(ITEMS_PER_GROUP, size=15)]
    clicks["u_once"] = ["once"]
    return TrainingCorpus(articles=articles, click_sequences=clicks)


@pytest.fixture(scope="module")
def item2vec(planted) -> Item2VecEncoder:
    return Item2VecEncoder(dim=32, epochs=30).fit(planted)


def item_probes() -> list[ArticleRecord]:
    return [ArticleRecord(id=f"g{g}_{i}") for g in range(GROUPS) for i in range(ITEMS_PER_GROUP)]


def media_probes() -> list[ArticleRecord]:
    """One article per media: articles of one media share a vector, which says nothing."""
    return [ArticleRecord(id=f"g{g}_m{m}", media_id=f"Group {g} Media {m}")
            for g in range(GROUPS) for m in range(MEDIA_PER_GROUP)]


def group_separation(vectors: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    """(share of rows whose nearest other row is in their group, same-group minus cross-group cosine)."""
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    nearest_same = float(np.mean(groups[sims.argmax(axis=1)] == groups))
    same = (groups[:, None] == groups[None, :]) & ~np.eye(len(groups), dtype=bool)
    cross = groups[:, None] != groups[None, :]
    return nearest_same, float(sims[same].mean() - sims[cross].mean())


@pytest.mark.parametrize(("encoder_class", "probes"), [(Item2VecEncoder, item_probes),
                                                       (Media2VecEncoder, media_probes)])
def test_training_separates_planted_groups_better_than_untrained(planted, encoder_class, probes):
    articles = probes()
    groups = np.array([group_of(a.id) for a in articles])
    trained = encoder_class(dim=32, epochs=30).fit(planted)
    untrained = encoder_class(dim=32, epochs=0).fit(planted)  # same vocabulary, starting vectors

    trained_nearest, trained_gap = group_separation(trained.encode(articles), groups)
    untrained_nearest, untrained_gap = group_separation(untrained.encode(articles), groups)

    assert trained_gap > 0.3
    assert trained_gap > untrained_gap + 0.3
    assert trained_nearest > 0.9
    assert trained_nearest > untrained_nearest + 0.5


def test_rare_unknown_and_id_less_articles_get_zero_rows(item2vec, planted):
    rows = item2vec.encode([
        planted.articles["once"],  # one click: below min_count
        planted.articles["never"],
        ArticleRecord(id="not-in-the-corpus"),
        ArticleRecord(id=""),
        planted.articles["g1_1"],
    ])
    assert not rows[:4].any()
    assert np.linalg.norm(rows[4]) == pytest.approx(1.0, abs=1e-5)


def test_version_follows_data_and_hyper_parameters(planted):
    fewer_users = TrainingCorpus(planted.articles, dict(list(planted.click_sequences.items())[:100]))
    encoder = Item2VecEncoder(dim=16, epochs=1)
    assert encoder.version == "untrained"
    first = encoder.fit(planted).version
    # The version is a digest of the weights: a retraining on the same clicks keeps it only if
    # fastText's lock-free training gave the very same weights.
    again = Item2VecEncoder(dim=16, epochs=1).fit(planted)
    same_weights = all(np.array_equal(getattr(encoder.model_, m)(), getattr(again.model_, m)())
                       for m in ("get_input_matrix", "get_output_matrix"))
    assert (again.version == first) == same_weights
    assert Item2VecEncoder(dim=16, epochs=1).fit(fewer_users).version != first
    assert Item2VecEncoder(dim=16, epochs=2).fit(planted).version != first


def test_media2vec_gives_an_article_its_media_vector(planted):
    encoder = Media2VecEncoder(dim=16, epochs=5).fit(planted)
    rows = encoder.encode([
        planted.articles["g0_0"],  # media "Group 0 Media 0"
        planted.articles["never"],  # never clicked, same media: the same vector
        ArticleRecord(id="new", media_id="Group 0 Media 0"),
        ArticleRecord(id="no-media"),
        ArticleRecord(id="unknown-media", media_id="Nobody Reads This"),
        planted.articles["once"],  # its media was seen once: below min_count
    ])
    assert np.linalg.norm(rows[0]) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_array_equal(rows[1], rows[0])
    np.testing.assert_array_equal(rows[2], rows[0])
    assert not rows[3:].any()


def test_item2vec_on_real_mind_histories(shared_data: Path):
    """Every id clicked at least min_count times gets a unit vector; rarer ids get zero rows."""
    sequences = {}
    with (shared_data / "mind-sample" / "behaviors.tsv").open(encoding="utf-8") as fh:
        for line in fh:
            _, user, _, history, _ = line.rstrip("\n").split("\t")
            sequences.setdefault(user, history.split())
    counts = Counter(aid for history in sequences.values() for aid in history)
    encoder = Item2VecEncoder(dim=16, epochs=2).fit(TrainingCorpus(click_sequences=sequences))

    ids = sorted(counts)
    norms = np.linalg.norm(encoder.encode([ArticleRecord(id=aid) for aid in ids]), axis=1)
    frequent = np.array([counts[aid] >= encoder.min_count for aid in ids])
    assert frequent.sum() > 1000 and (~frequent).sum() > 1000  # the sample has both kinds
    assert np.allclose(norms[frequent], 1.0, atol=1e-5)
    assert not norms[~frequent].any()
