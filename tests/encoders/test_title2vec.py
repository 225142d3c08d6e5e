"""title2vec: the category objective on real Toutiao titles, the click objective on a planted
world, and the encoder contract (save/load, batching, zero rows)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from encoders.base import TrainingCorpus
from encoders.title2vec import TitleLSTMEncoder
from recall.domain import ArticleRecord

TNEWS = Path(__file__).resolve().parents[3] / "shared" / "data" / "tnews" / "tnews_train.jsonl"
TRAIN_TITLES, HELD_OUT_TITLES = 3000, 500


@pytest.fixture(scope="module")
def toutiao() -> tuple[list[ArticleRecord], list[ArticleRecord]]:
    """The first Toutiao headlines with their categories: (training, held out)."""
    articles = []
    with TNEWS.open(encoding="utf-8") as fh:
        for line, _ in zip(fh, range(TRAIN_TITLES + HELD_OUT_TITLES)):
            row = json.loads(line)
            articles.append(ArticleRecord(id=row["id"], title=row["title"], category=row["category"]))
    return articles[:TRAIN_TITLES], articles[TRAIN_TITLES:]


@pytest.fixture(scope="module")
def toutiao_corpus(toutiao) -> TrainingCorpus:
    return TrainingCorpus(articles={a.id: a for a in toutiao[0]})


@pytest.fixture(scope="module")
def trained(toutiao_corpus) -> TitleLSTMEncoder:
    return TitleLSTMEncoder(epochs=6).fit(toutiao_corpus)


def nearest_same_label(queries: np.ndarray, query_labels: list, pool: np.ndarray | None = None,
                       pool_labels: list | None = None) -> float:
    """Share of queries whose nearest pool row shares its label; without a pool, the nearest
    other query."""
    if pool is None:
        sims = queries @ queries.T
        np.fill_diagonal(sims, -np.inf)
        pool_labels = query_labels
    else:
        sims = queries @ pool.T
    return float(np.mean(np.array(pool_labels)[sims.argmax(axis=1)] == np.array(query_labels)))


def test_category_objective_beats_the_untrained_network_on_held_out_titles(toutiao, toutiao_corpus, trained):
    train, held_out = toutiao
    untrained = TitleLSTMEncoder(epochs=0).fit(toutiao_corpus)  # same vocabulary, initial weights
    assert trained.objective_ == "category"  # Toutiao has no clicks

    def rate(encoder: TitleLSTMEncoder) -> float:
        return nearest_same_label(encoder.encode(held_out), [a.category for a in held_out],
                                  encoder.encode(train), [a.category for a in train])

    trained_rate, untrained_rate = rate(trained), rate(untrained)
    assert trained_rate > untrained_rate + 0.08, (trained_rate, untrained_rate)
    assert trained_rate > 1.5 * untrained_rate, (trained_rate, untrained_rate)


def planted_click_world(seed: int = 0) -> tuple[TrainingCorpus, list[ArticleRecord]]:
    """Eight topics of twelve made-up words each; titles mix two topic words with four shared
    filler words; readers click inside one topic. No categories: only clicks tie a topic's
    words together. Returns the corpus and 20 unseen titles per topic."""
    rng = np.random.default_rng(seed)
    topics, words, filler = 8, 12, 40

    def title(topic: int) -> str:
        picked = [f"t{topic}w{w}" for w in rng.choice(words, 2, replace=False)]
        picked += [f"f{f}" for f in rng.choice(filler, 4, replace=False)]
        return " ".join(rng.permutation(picked))

    seen = [ArticleRecord(id=f"a{t}_{i}", title=title(t)) for t in range(topics) for i in range(30)]
    unseen = [ArticleRecord(id=f"h{t}_{i}", title=title(t)) for t in range(topics) for i in range(20)]
    clicks = {}
    for user in range(150):
        topic = rng.integers(topics)
        clicks[f"u{user}"] = [f"a{topic}_{i}" for i in rng.choice(30, size=10, replace=False)]
    return TrainingCorpus(articles={a.id: a for a in seen}, click_sequences=clicks), unseen


def test_click_objective_learns_planted_topics_from_co_clicks():
    corpus, unseen = planted_click_world()
    topics = [a.id.split("_")[0] for a in unseen]
    trained = TitleLSTMEncoder(dim=32, embed_dim=32, hidden=32, epochs=3).fit(corpus)
    untrained = TitleLSTMEncoder(dim=32, embed_dim=32, hidden=32, epochs=0).fit(corpus)
    assert trained.objective_ == "clicks"

    trained_rate = nearest_same_label(trained.encode(unseen), topics)
    untrained_rate = nearest_same_label(untrained.encode(unseen), topics)
    assert trained_rate > 0.8, trained_rate
    assert trained_rate > untrained_rate + 0.3, (trained_rate, untrained_rate)


def test_clicks_and_categories_train_together_when_both_exist():
    corpus, _ = planted_click_world()
    labelled = {aid: ArticleRecord(id=aid, title=a.title, category=aid.split("_")[0])
                for aid, a in corpus.articles.items()}
    encoder = TitleLSTMEncoder(dim=16, embed_dim=16, hidden=16, epochs=1)
    assert encoder.fit(TrainingCorpus(labelled, corpus.click_sequences)).objective_ == "clicks+category"
    too_few_pairs = TitleLSTMEncoder(dim=16, embed_dim=16, hidden=16, epochs=1, min_pairs=10**6)
    assert too_few_pairs.fit(TrainingCorpus(labelled, corpus.click_sequences)).objective_ == "category"


def test_nothing_to_learn_from_is_an_error():
    corpus, _ = planted_click_world()
    with pytest.raises(ValueError, match="nothing to learn from"):
        TitleLSTMEncoder().fit(TrainingCorpus(articles=corpus.articles))


def test_missing_or_unreadable_titles_get_zero_rows(trained, toutiao):
    good = toutiao[1][0]
    rows = trained.encode([
        ArticleRecord(id="none"),
        ArticleRecord(id="empty", title=""),
        ArticleRecord(id="punctuation", title=" ！？…… "),
        ArticleRecord(id="unknown-words", title="zzqxv wqkjh"),  # all out of vocabulary
        good,
    ])
    assert not rows[:4].any()
    assert np.linalg.norm(rows[4]) == pytest.approx(1.0, abs=1e-5)


def test_batch_equals_one_by_one(trained, toutiao):
    articles = toutiao[1][:300]  # more than one internal encode batch
    singles = np.vstack([trained.encode([a]) for a in articles])
    np.testing.assert_allclose(trained.encode(articles), singles, atol=1e-5)
    assert trained.encode([]).shape == (0, trained.dim)


def test_save_then_load_gives_identical_vectors(trained, toutiao, tmp_path: Path):
    trained.save(tmp_path / "model")
    loaded = TitleLSTMEncoder.load(tmp_path / "model")
    articles = toutiao[1][:100]
    np.testing.assert_array_equal(loaded.encode(articles), trained.encode(articles))
    assert (loaded.name, loaded.version, loaded.dim, loaded.objective_) == (
        "title2vec", trained.version, trained.dim, trained.objective_)


def test_version_follows_data_and_hyper_parameters():
    corpus, _ = planted_click_world()
    small = dict(dim=16, embed_dim=16, hidden=16, epochs=1)
    encoder = TitleLSTMEncoder(**small)
    assert encoder.version == "untrained"
    first = encoder.fit(corpus).version
    assert TitleLSTMEncoder(**small).fit(corpus).version == first
    assert TitleLSTMEncoder(**{**small, "lr": 0.02}).fit(corpus).version != first
    assert TitleLSTMEncoder(**small).fit(planted_click_world(seed=1)[0]).version != first
