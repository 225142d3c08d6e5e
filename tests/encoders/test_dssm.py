"""dssm on a planted world: readers in four groups click (mostly) their group's articles, which
carry the group's category, subcategories, media and tags. A trained model must place a new
reader near their group's never-clicked articles; an untrained one cannot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from encoders.base import TrainingCorpus
from encoders.dssm import DSSMEncoder
from recall.domain import ArticleRecord

GROUPS = 4
ARTICLES_PER_GROUP = 60
CLICKED_PER_GROUP = 45  # the rest are cold: never clicked by anyone
USERS_PER_GROUP = 30


@dataclass
class PlantedWorld:
    articles: dict[str, ArticleRecord]
    group_of: dict[str, int]
    corpus: TrainingCorpus
    cold: list[str]
    held_out: list[tuple[int, list[str]]]  # (group, clicks) of readers the model never saw


def group_article(rng: np.random.Generator, group: int, n: int) -> ArticleRecord:
    tags = [f"g{group} tag {i}" for i in rng.choice(12, size=int(rng.integers(2, 5)), replace=False)]
    tags.append(f"breaking {rng.integers(10)}")  # shared by every group: carries no signal
    return ArticleRecord(
        id=f"g{group}n{n}", title="a title", category=f"cat{group}",
        subcategory=f"sub{group}-{rng.integers(3)}", media_id=f"Media {group}-{rng.integers(3)}",
        tags=tuple((tag, 1.0 - 0.1 * rank) for rank, tag in enumerate(tags)),
    )


@pytest.fixture(scope="module")
def world() -> PlantedWorld:
    rng = np.random.default_rng(0)
    articles = {a.id: a for g in range(GROUPS)
                for a in (group_article(rng, g, n) for n in range(ARTICLES_PER_GROUP))}
    group_of = {aid: int(aid[1]) for aid in articles}
    clickable = [aid for aid in articles if int(aid.split("n")[1]) < CLICKED_PER_GROUP]

    def clicks(group: int, n: int) -> list[str]:
        own = [aid for aid in clickable if group_of[aid] == group]
        return [own[rng.integers(len(own))] if rng.random() < 0.9 else clickable[rng.integers(len(clickable))]
                for _ in range(n)]

    sequences = {f"u{g}-{i}": clicks(g, 15) for g in range(GROUPS) for i in range(USERS_PER_GROUP)}
    sequences["id-only reader"] = ["N1", "N2", "N3"]  # unknown articles: nothing to learn from
    return PlantedWorld(
        articles=articles, group_of=group_of,
        corpus=TrainingCorpus(articles=dict(articles), click_sequences=sequences),
        cold=[aid for aid in articles if aid not in set(clickable)],
        held_out=[(g, clicks(g, 10)) for g in range(GROUPS) for _ in range(5)],
    )


@pytest.fixture(scope="module")
def trained(world) -> DSSMEncoder:
    return DSSMEncoder(epochs=5, threads=1).fit(world.corpus)


def recall_at_10(encoder: DSSMEncoder, world: PlantedWorld) -> float:
    """Share of each held-out reader's top 10 cold articles that belong to their group."""
    items = encoder.encode([world.articles[aid] for aid in world.cold])
    users = encoder.encode_users([[world.articles[aid] for aid in clicks] for _, clicks in world.held_out])
    top = np.argsort(-(users @ items.T), axis=1)[:, :10]
    return float(np.mean([[world.group_of[world.cold[j]] == g for j in row]
                          for (g, _), row in zip(world.held_out, top)]))


def test_training_ranks_new_readers_group_cold_articles_first(trained, world):
    untrained = DSSMEncoder(epochs=0, threads=1).fit(world.corpus)
    learned, chance = recall_at_10(trained, world), recall_at_10(untrained, world)
    assert learned >= 0.9, learned
    assert learned > chance + 0.3, (learned, chance)


def test_cold_articles_get_unit_vectors_and_featureless_ones_zero_rows(trained, world):
    cold = trained.encode([world.articles[aid] for aid in world.cold])
    assert cold.shape == (len(world.cold), 64) and cold.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(cold, axis=1), 1.0, atol=1e-5)
    unknown = ArticleRecord(id="x", category="never seen", tags=(("nor this", 1.0),))
    featureless = trained.encode([ArticleRecord(id="N1", id_only=True), unknown])
    assert not featureless.any()
    users = trained.encode_users([[], [ArticleRecord(id="N1", id_only=True)], [world.articles["g0n0"]]])
    assert not users[:2].any() and np.linalg.norm(users[2]) == pytest.approx(1.0, abs=1e-5)


def test_batches_agree_with_one_by_one(trained, world):
    articles = [world.articles[aid] for aid in world.cold[:5]] + [ArticleRecord(id="empty")]
    np.testing.assert_allclose(trained.encode(articles), np.vstack([trained.encode([a]) for a in articles]),
                               atol=1e-4)
    histories = [[world.articles[aid] for aid in clicks] for _, clicks in world.held_out[:4]] + [[]]
    np.testing.assert_allclose(trained.encode_users(histories),
                               np.vstack([trained.encode_users([h]) for h in histories]), atol=1e-4)


def test_save_and_load_give_identical_vectors(trained, world, tmp_path):
    trained.save(tmp_path / "dssm")
    loaded = DSSMEncoder.load(tmp_path / "dssm")
    assert loaded.version == trained.version != "untrained"
    assert loaded.params() == trained.params()
    articles = [world.articles[aid] for aid in world.cold[:8]]
    np.testing.assert_array_equal(loaded.encode(articles), trained.encode(articles))
    histories = [[world.articles[aid] for aid in clicks] for _, clicks in world.held_out[:3]]
    np.testing.assert_array_equal(loaded.encode_users(histories), trained.encode_users(histories))


def test_same_data_same_version_and_new_clicks_a_new_one(trained, world):
    again = DSSMEncoder(epochs=5, threads=1).fit(world.corpus)
    assert again.version == trained.version
    cold = [world.articles["g1n50"]]
    np.testing.assert_allclose(again.encode(cold), trained.encode(cold), atol=1e-5)
    more = TrainingCorpus(world.corpus.articles, {**world.corpus.click_sequences, "new": ["g2n0", "g2n1"]})
    assert DSSMEncoder(epochs=5, threads=1).fit(more).version != trained.version


def test_text_vectors_place_an_article_that_has_nothing_else(world, tmp_path):
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(GROUPS, 8))
    text = {aid: (centres[g] + 0.3 * rng.normal(size=8)).astype(np.float32)
            for aid, g in world.group_of.items()}
    encoder = DSSMEncoder(epochs=5, threads=1).fit(world.corpus, text_vectors=text)
    text_only = [ArticleRecord(id=f"text-only-{g}") for g in range(GROUPS)]
    text.update({a.id: centres[g].astype(np.float32) for g, a in enumerate(text_only)})
    items = encoder.encode(text_only, text_vectors=text)
    assert np.linalg.norm(items, axis=1) == pytest.approx([1.0] * GROUPS, abs=1e-5)
    assert not encoder.encode(text_only).any(), "without its text vector it has nothing"

    users = encoder.encode_users([[world.articles[aid] for aid in clicks] for _, clicks in world.held_out],
                                 text_vectors=text)
    groups = np.array([g for g, _ in world.held_out])
    hits = (users @ items.T).argmax(axis=1) == groups
    assert hits.mean() >= 0.75, hits.mean()
    encoder.save(tmp_path / "dssm")
    loaded = DSSMEncoder.load(tmp_path / "dssm")
    np.testing.assert_array_equal(loaded.encode(text_only, text_vectors=text), items)


def test_refuses_to_fit_without_clicks(world):
    with pytest.raises(ValueError):
        DSSMEncoder().fit(TrainingCorpus(articles=world.articles, click_sequences={"u": ["g0n0"]}))
