"""tag2vec (real fastText) on a synthetic world whose topics are known: whether training learns
the planted topics. The encoder contract (save/load, batch, dims, empty input, encode before fit,
the reuse key) is checked for every encoder in test_common.py."""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
from collections import defaultdict

import numpy as np
import pytest

from encoders.base import TrainingCorpus
from encoders.registry import build_encoder
from encoders.tag2vec import Tag2VecEncoder, tag_token, top_tags
from recall.domain import ArticleRecord
from recall.index import normalise
from recall.settings import Settings
from recall.synthetic import TOPICS, generate

DIM = 32


@pytest.fixture(scope="module")
def world():
    return generate(articles=400, users=60, days=4, seed=17)


@pytest.fixture(scope="module")
def corpus(world) -> TrainingCorpus:
    clicks: dict[str, list[str]] = defaultdict(list)
    for event in world.events:
        if event.kind == "click":
            clicks[event.user_id].append(event.article_id)
    return TrainingCorpus(articles={a.id: a for a in world.articles}, click_sequences=dict(clicks))


@pytest.fixture(scope="module")
def encoder(corpus) -> Tag2VecEncoder:
    return Tag2VecEncoder(dim=DIM, epochs=10).fit(corpus)


def topic_margin(vectors: np.ndarray, topics: np.ndarray) -> tuple[float, float]:
    """(mean cosine of same-topic pairs, mean cosine of cross-topic pairs)."""
    cos = vectors @ vectors.T
    same = topics[:, None] == topics[None, :]
    np.fill_diagonal(same, False)
    cross = topics[:, None] != topics[None, :]
    return float(cos[same].mean()), float(cos[cross].mean())


def test_an_article_without_tags_gives_a_zero_row(encoder, world):
    no_tags = [ArticleRecord(id="none"), ArticleRecord(id="blank", tags=(("  ", 0.9), ("", 0.5)))]
    vectors = encoder.encode([world.articles[0], *no_tags])
    assert np.linalg.norm(vectors[0]) > 0.99
    assert not vectors[1:].any()


def test_only_the_top_three_tags_count_in_weight_order():
    article = ArticleRecord(id="x", tags=(("d", 0.1), ("New York City", 0.9), ("b", 0.5), ("c", 0.3)))
    assert top_tags(article) == ["new_york_city", "b", "c"]
    assert tag_token("  Grand   Slam ") == "grand_slam"


def random_tag_vectors(articles: list[ArticleRecord], dim: int, seed: int) -> np.ndarray:
    """The untrained baseline: every tag a random vector, an article the sum of its top three."""
    rng = np.random.default_rng(seed)
    table: dict[str, np.ndarray] = {}
    out = np.zeros((len(articles), dim), np.float32)
    for row, article in enumerate(articles):
        for tag in top_tags(article):
            if tag not in table:
                table[tag] = rng.normal(size=dim)
            out[row] += table[tag]
    return normalise(out)


def test_training_learns_the_planted_topics(encoder, world):
    topics = np.array([world.article_topic[a.id] for a in world.articles])
    same, cross = topic_margin(encoder.encode(world.articles), topics)
    base_same, base_cross = topic_margin(random_tag_vectors(world.articles, DIM, seed=0), topics)
    # Articles of one topic share tags, so even random tag vectors put them a little closer...
    assert base_same - base_cross > 0.05
    # ...but training pulls a topic together and pushes topics apart by far more.
    assert same - cross > 0.4
    assert same - cross > (base_same - base_cross) + 0.2
    # No collapse onto one direction: unrelated topics are not near-parallel.
    assert cross < 0.6

    # Nearest neighbours are almost always of the same topic (the base rate is about 1 in 16).
    vectors = encoder.encode(world.articles)
    cos = vectors @ vectors.T
    np.fill_diagonal(cos, -2)
    nearest = np.argsort(-cos, axis=1)[:, :10]
    purity = float((topics[nearest] == topics[:, None]).mean())
    base_rate = float(np.mean([(topics == t).mean() for t in topics]))
    assert purity > 0.9 and purity > 5 * base_rate


def test_an_unseen_tag_still_gets_a_subword_vector_near_its_topic(encoder, world):
    assert_unseen_tag_near_its_topic(encoder, world)


def assert_unseen_tag_near_its_topic(encoder: Tag2VecEncoder, world) -> None:
    assert not encoder.knows("football_bicycle_kick") and encoder.knows("football_goal")
    unseen = encoder.encode([ArticleRecord(id="new", tags=(("football_bicycle_kick", 1.0),))])[0]
    assert np.linalg.norm(unseen) > 0.99
    vectors = encoder.encode(world.articles)
    topics = np.array([world.article_topic[a.id] for a in world.articles])
    centroid_cos = {t: float(unseen @ normalise(vectors[topics == t].mean(axis=0, keepdims=True))[0])
                    for t in np.unique(topics)}
    others = [c for t, c in centroid_cos.items() if t != "football"]
    assert centroid_cos["football"] > max(others)


def dirty_the_heap(nbytes: int) -> None:
    """Leave large freed blocks full of 0x7f bytes (3.4e38 as float32) in the C heap."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(nbytes) for _ in range(4)]
    for block in blocks:
        ctypes.memset(block, 0x7F, nbytes)
    for block in blocks:
        libc.free(block)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the heap reuse is glibc's")
def test_training_never_starts_from_leftover_memory(corpus):
    for dim in (8, 16):
        dirty_the_heap((100_000 + 1000) * dim * 4)  # about the size of fastText's input matrix
        encoder = Tag2VecEncoder(dim=dim, epochs=2).fit(corpus)
        weights = encoder.model_.get_input_matrix()
        assert np.isfinite(weights).all() and np.abs(weights).max() < 100


def test_a_corpus_without_tags_cannot_be_trained():
    corpus = TrainingCorpus(articles={"a": ArticleRecord(id="a"), "b": ArticleRecord(id="b", tags=(("x", 1.0),))},
                            click_sequences={"u": ["a", "missing"]})
    # A lone tag is no sentence, and the only reader clicked untagged (or unknown) articles.
    with pytest.raises(ValueError, match="no training sentences"):
        Tag2VecEncoder(dim=8, epochs=1).fit(corpus)


def tagged(n: int, *tags: str) -> ArticleRecord:
    return ArticleRecord(id=f"a{n}", tags=tuple((t, 1.0 - i / 10) for i, t in enumerate(tags)))


def test_the_version_is_a_digest_of_the_weights(tmp_path):
    articles = {a.id: a for a in [tagged(0, "x", "y"), tagged(1, "y", "z"), tagged(2, "z", "w")]}
    first = Tag2VecEncoder(dim=8, epochs=1).fit(TrainingCorpus(articles, {"u": ["a0", "a1"]}))
    again = Tag2VecEncoder(dim=8, epochs=1).fit(TrainingCorpus(articles, {"u": ["a0", "a1"]}))
    other = Tag2VecEncoder(dim=8, epochs=1).fit(TrainingCorpus(articles, {"u": ["a1", "a2"]}))
    # fastText's lock-free training may give other weights on the same sentences: then the
    # version differs (the embedding cache, keyed by version, never mixes the two), else not.
    same_weights = all(np.array_equal(getattr(first.model_, m)(), getattr(again.model_, m)())
                       for m in ("get_input_matrix", "get_output_matrix"))
    assert (first.version == again.version) == same_weights
    assert len({first.version, other.version}) == 2
    # The same weights give the same version, read back from disk or computed anew.
    first.save(tmp_path / "m")
    loaded = Tag2VecEncoder.load(tmp_path / "m")
    assert loaded.version == loaded._weights_digest() == first.version
    # One weight changed is another version.
    loaded.model_.set_matrices(loaded.model_.get_input_matrix() * 1.001, loaded.model_.get_output_matrix())
    assert loaded._weights_digest() != first.version


def test_idf_weights_drop_the_tags_every_article_carries():
    corpus = TrainingCorpus({a.id: a for a in [
        tagged(0, "breaking", "video", "rugby", "scrum"), tagged(1, "breaking", "video", "opera"),
        tagged(2, "breaking", "video", "bonds", "yields"), tagged(3, "breaking", "video", "rugby")]})
    idf = Tag2VecEncoder(dim=8, epochs=2, weighting="idf").fit(corpus)
    weights = dict(zip(["breaking", "opera", "rugby", "never_seen"],
                       idf.tag_weights(["breaking", "opera", "rugby", "never_seen"])))
    assert weights["breaking"] == 0 and weights["opera"] == weights["never_seen"] > weights["rugby"] > 0
    # An article whose only rare tag is "opera" points exactly along it; equal weights let the
    # two tags every article carries pull it off.
    opera = normalise(idf.token_vectors(["opera"]))[0]
    assert idf.encode([corpus.articles["a1"]])[0] @ opera == pytest.approx(1.0, abs=1e-5)
    equal = Tag2VecEncoder(dim=8, epochs=2, weighting="equal").fit(corpus)
    assert equal.encode([corpus.articles["a1"]])[0] @ normalise(equal.token_vectors(["opera"]))[0] < 0.99


def test_top_limits_the_tags_summed_and_zero_takes_them_all(encoder):
    four = tagged(0, "football_goal", "football_striker", "football_derby", "tennis_serve")
    raw = encoder.token_vectors(top_tags(four, k=4))
    assert encoder.top == 0
    np.testing.assert_allclose(encoder.encode([four])[0], normalise(raw.sum(axis=0, keepdims=True))[0], atol=1e-5)
    three = Tag2VecEncoder(dim=DIM, top=3)
    three.model_, three.version = encoder.model_, encoder.version
    np.testing.assert_allclose(three.encode([four])[0], normalise(raw[:3].sum(axis=0, keepdims=True))[0], atol=1e-5)


def test_unknown_weighting_is_refused():
    with pytest.raises(ValueError, match="weighting"):
        Tag2VecEncoder(weighting="tf")


def test_the_registry_builds_it_from_settings():
    settings = Settings(_env_file=None, tag2vec_dim=24, tag2vec_epochs=3, threads=1, seed=5,
                        tag2vec_top=3, tag2vec_weighting="idf", tag2vec_title_words=True)
    encoder = build_encoder("tag2vec", settings)
    assert isinstance(encoder, Tag2VecEncoder)
    assert (encoder.dim, encoder.epochs, encoder.threads, encoder.seed) == (24, 3, 1, 5)
    assert (encoder.top, encoder.weighting, encoder.title_words) == (3, "idf", True)


def test_the_synthetic_topics_cover_many_categories():
    # The planted-structure checks above are only meaningful with many topics to confuse.
    assert sum(len(t) for t in TOPICS.values()) >= 10


def test_character_ngrams_follow_the_language_of_the_tags(encoder):
    assert encoder.char_ngrams == "3-6" and encoder.model_.f.getArgs().minn == 3
    chinese = TrainingCorpus({a.id: a for a in [tagged(0, "股份有限公司", "年度报告", "上海证券交易所"),
                                                tagged(1, "基金", "股票", "年度报告"), tagged(2, "湖人", "詹姆斯", "NBA")]})
    fitted = Tag2VecEncoder(dim=8, epochs=1).fit(chinese)
    assert fitted.char_ngrams == "1-3" and fitted.params()["char_ngrams"] == "1-3"
    assert (fitted.model_.f.getArgs().minn, fitted.model_.f.getArgs().maxn) == (1, 3)
    # A tag never seen still gets a vector from the characters it shares with known ones.
    assert not fitted.knows("股份") and np.linalg.norm(fitted.token_vectors(["股份"])) > 0
    with pytest.raises(ValueError, match="char_ngrams"):
        Tag2VecEncoder(char_ngrams="2-5")


def test_title_words_join_the_sentences_of_chinese_tags_only(encoder, world):
    """"auto" adds the titles' words (jieba's) for Chinese tags and leaves English tags alone."""
    title_word = world.articles[0].title.split()[0].lower()
    assert encoder.title_words is False and not encoder.knows(title_word)
    headlines = [ArticleRecord(id=f"t{n}", title=title, tags=tuple((t, 1.0) for t in tags)) for n, (title, tags) in
                 enumerate([("上海证券交易所发布年度报告", ("年度报告", "上海证券交易所")),
                            ("湖人队詹姆斯再夺冠军", ("湖人", "詹姆斯"))])]
    fitted = Tag2VecEncoder(dim=8, epochs=1).fit(TrainingCorpus({a.id: a for a in headlines}))
    assert fitted.title_words is True and fitted.params()["title_words"] is True
    assert fitted.knows("发布") and fitted.knows("湖人队")
    pinned = Tag2VecEncoder(dim=8, epochs=1, title_words=False).fit(TrainingCorpus({a.id: a for a in headlines}))
    assert not pinned.knows("发布")
    with pytest.raises(ValueError, match="title_words"):
        Tag2VecEncoder(title_words="yes")


def test_a_large_corpus_gets_fewer_epochs_within_the_token_budget(corpus):
    tokens = sum(len(s) for s in Tag2VecEncoder().sentences(corpus))
    assert Tag2VecEncoder(epochs=30, max_tokens=10**9).epochs_for(tokens) == 30  # small: every epoch
    assert Tag2VecEncoder(epochs=30, max_tokens=tokens * 8).epochs_for(tokens) == 8
    assert Tag2VecEncoder(epochs=30, max_tokens=tokens).epochs_for(tokens) == Tag2VecEncoder.FEWEST_EPOCHS
    assert Tag2VecEncoder(epochs=3, max_tokens=tokens).epochs_for(tokens) == 3  # never more than asked
    trained = Tag2VecEncoder(dim=16, epochs=30, max_tokens=tokens * 6, threads=1).fit(corpus)
    assert trained.training_metrics_ == {"tokens": tokens, "epochs": 6}
    assert trained.params()["max_tokens"] == tokens * 6  # in the reuse key
    assert build_encoder("tag2vec", Settings(_env_file=None, fasttext_max_tokens=123)).max_tokens == 123


def test_a_warm_fit_cuts_tags_as_the_previous_model_did(encoder, corpus, world):
    """Chinese tags arriving would settle "auto" n-grams at 1-3 on a cold fit; the warm fit keeps
    the previous model's 3-6, and an unseen tag still finds its topic through subwords trained
    one epoch (fastText starts them afresh: a .vec file carries words only)."""
    chinese = {f"zh{n}": ArticleRecord(id=f"zh{n}", tags=((f"公司{n}", 1.0), (f"基金{n}", 0.9))) for n in range(60)}
    grown = TrainingCorpus({**corpus.articles, **chinese}, corpus.click_sequences)
    assert Tag2VecEncoder(dim=8, epochs=1).fit(grown).char_ngrams == "1-3"
    warm = Tag2VecEncoder(dim=DIM, epochs=10).warm_fit(grown, encoder, 1)
    assert (warm.char_ngrams, warm.title_words) == ("3-6", False) and warm.model_.f.getArgs().minn == 3
    assert warm.params() == encoder.params()
    assert_unseen_tag_near_its_topic(warm, world)
