"""eges on a planted-community click graph whose groups each have their own category, media and
tags: clicked articles recover the communities, and an article nobody clicked lies near the
articles that share its side information (the cold start); articles without side information
are still placed by their clicks, and one with neither is a zero row. The encoder contract is
checked for every encoder in test_common.py."""

from __future__ import annotations

import numpy as np
import pytest

from encoders.eges import FIELDS, EGESEncoder
from recall.domain import ArticleRecord
from tests.encoders.test_graph import GROUPS, ITEMS_PER_GROUP, planted_corpus
from tests.encoders.test_graph2vec import neighbour_purity

BARE = 3  # the first articles of each group carry no side information


def described(group: int, aid: str) -> ArticleRecord:
    return ArticleRecord(id=aid, category=f"cat{group}", subcategory=f"sub{group}-{len(aid) % 2}",
                         media_id=f"Media {group}", tags=((f"tag{group}", 1.0), (f"topic{group % 3}", 0.5)))


@pytest.fixture(scope="module")
def fitted() -> EGESEncoder:
    corpus = planted_corpus()
    corpus.articles = {f"g{g}_{i}": described(g, f"g{g}_{i}") if i >= BARE else ArticleRecord(id=f"g{g}_{i}")
                       for g in range(GROUPS) for i in range(ITEMS_PER_GROUP)}
    return EGESEncoder(dim=16, epochs=3, batch_size=256, threads=1).fit(corpus)


def clicked() -> tuple[list[ArticleRecord], np.ndarray]:
    ids = [(g, f"g{g}_{i}") for g in range(GROUPS) for i in range(ITEMS_PER_GROUP)]
    return [ArticleRecord(id=aid) for _, aid in ids], np.array([g for g, _ in ids])


def test_clicked_articles_recover_planted_communities(fitted):
    probes, groups = clicked()
    vectors = fitted.encode(probes)
    assert (np.linalg.norm(vectors, axis=1) > 0).all()  # the bare ones too: by their clicks
    assert neighbour_purity(vectors, groups) > 0.8  # chance: about 0.15


@pytest.mark.parametrize("group", range(GROUPS))
def test_an_article_nobody_clicked_lies_near_those_sharing_its_side_information(fitted, group):
    probes, groups = clicked()
    known = fitted.encode([described(g, p.id) for p, g in zip(probes, groups)])
    cold = fitted.encode([described(group, "posted-just-now")])[0]
    assert np.linalg.norm(cold) == pytest.approx(1.0, abs=1e-5)
    similarity = known @ cold
    nearest = np.argsort(-similarity)[:ITEMS_PER_GROUP]
    assert (groups[nearest] == group).mean() >= 0.75
    assert similarity[groups == group].mean() > similarity[groups != group].mean() + 0.3


def test_the_cold_start_weights_side_fields_by_the_mean_learned_attention(fitted):
    attention = fitted.model_.attention.weight.detach()
    assert attention.shape == (GROUPS * ITEMS_PER_GROUP, FIELDS)
    assert attention.std() > 0  # learned per article, not left equal


def test_an_article_with_neither_clicks_nor_known_side_information_is_a_zero_row(fitted):
    vectors = fitted.encode([ArticleRecord(id="nothing"), ArticleRecord(
        id="unknown-values", category="never seen", media_id="Nobody", tags=(("no such tag", 1.0),))])
    assert not vectors.any()
    assert fitted.training_metrics_["nodes_without_side_info"] == GROUPS * BARE


def test_a_pair_budget_trains_on_a_share_of_the_walks(fitted):
    assert fitted.training_metrics_["walk_share"] == 1.0
    all_pairs = fitted.training_metrics_["pairs"]
    corpus = planted_corpus()
    capped = EGESEncoder(dim=16, epochs=3, batch_size=256, threads=1, max_pairs=all_pairs // 4).fit(corpus)
    assert capped.training_metrics_["walk_share"] == pytest.approx(0.25, abs=0.01)
    assert capped.training_metrics_["pairs"] <= all_pairs // 4
    assert capped.version != fitted.version
    probes, groups = clicked()
    assert neighbour_purity(capped.encode(probes), groups) > 0.5  # chance: about 0.15
