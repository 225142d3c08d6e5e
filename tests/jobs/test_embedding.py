"""Articles embedded on Ray (jobs/embedding.py): through Ray Data's actor pool or as one task,
the very vectors the encoder gives in this process, and the node that made them named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import ray
from rich.progress import Progress

from encoders.base import TrainingCorpus
from encoders.registry import build_encoder, load_encoder
from jobs.embedding import ArticleEmbedding, encode_in_batches
from recall.domain import ArticleRecord
from recall.settings import Settings
from recall.synthetic import generate


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, list[ArticleRecord]]:
    """A tag2vec model saved in a folder (as the nightly's train step leaves it), and articles."""
    articles = generate(articles=150, users=10, days=2, seed=5).articles
    encoder = build_encoder("tag2vec", Settings(_env_file=None, tag2vec_epochs=5))
    encoder.fit(TrainingCorpus(articles={a.id: a for a in articles}))
    model_dir = tmp_path_factory.mktemp("models") / "tag2vec"
    encoder.save(model_dir)
    return model_dir, articles


@pytest.mark.parametrize("dataset_min", [0, 10**6], ids=["actor-pool", "one-task"])
def test_articles_embedded_on_ray_get_the_vectors_of_this_process(trained, dataset_min):
    model_dir, articles = trained
    embedding = ArticleEmbedding("tag2vec", model_dir, actors=2, dataset_min=dataset_min,
                                 bar=Progress(disable=True))
    vectors = embedding(articles)
    np.testing.assert_array_equal(vectors, encode_in_batches(load_encoder("tag2vec", model_dir), articles))
    assert np.linalg.norm(vectors, axis=1).min() > 0
    assert embedding.nodes == [ray.get_runtime_context().get_node_id()]
