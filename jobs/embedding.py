"""Articles embedded on Ray by a trained encoder that workers load from its model folder.

Many articles go through Ray Data: ``map_batches`` over an actor pool, each actor holding one
loaded model, results streamed back as they come (the console's bar follows them). A few go as
one Ray task (fewer than ``settings.embed_dataset_min``). Either way the workers say which nodes
they ran on, and batch for batch the vectors are the ones the encoder gives in this process.

Why a threshold (measured on the 2-core machine, shared and loaded, load average 11 to 27, with
a warm Ray; tag2vec, best of three): Ray Data took 12-16 s whatever the size (100 or 3000
articles), nearly all of it starting the pool's actors and its executor, where one task took
0.1-0.5 s. On one node the pool is no faster than one task of ``threads`` threads; it pays once
encoding outlasts its start and other nodes share the work. Below 2000 articles, one task is
what the cheap encoders want (tag2vec: a fraction of a second against the pool's start) and costs
the slow ones at most what 2000 articles take on one node (doc2vec encoded 9 articles/s on the
same loaded machine); a cold nightly, where the slow encoders dominate, goes through the pool.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import ray
from ray.data import ActorPoolStrategy, DataContext
from rich.progress import Progress

from encoders.registry import load_encoder
from jobs.raywork import node_id, run_task
from recall.domain import ArticleRecord

BATCH = 512


def encode_in_batches(encoder, articles: Sequence[ArticleRecord]) -> np.ndarray:
    parts = [encoder.encode(articles[start:start + BATCH]) for start in range(0, len(articles), BATCH)]
    return np.concatenate(parts) if parts else np.zeros((0, encoder.dim), np.float32)


def encode_articles(name: str, model_dir: Path, articles: Sequence[ArticleRecord]) -> np.ndarray:
    """The Ray task of a few articles: the model loaded here, their vectors in order."""
    return encode_in_batches(load_encoder(name, model_dir), articles)


class BatchEncoder:
    """A Ray Data actor: one model, loaded once, encoding batches of pickled articles. Each output
    row keeps its article's position and names the node that encoded it."""

    def __init__(self, name: str, model_dir: Path):
        self.encoder = load_encoder(name, model_dir)
        self.node = node_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        articles = [pickle.loads(blob) for blob in batch["article"]]
        return {"position": batch["position"], "vector": encode_in_batches(self.encoder, articles),
                "node": np.full(len(articles), self.node)}


@contextmanager
def _quiet_data() -> Iterator[None]:
    """Ray Data without its own progress bars and its notes of each execution (the nightly's
    Rich bar follows the results; the notes stay in Ray's log files)."""
    context, log = DataContext.get_current(), logging.getLogger("ray.data")
    shown, level = context.enable_progress_bars, log.level
    context.enable_progress_bars = False
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        context.enable_progress_bars = shown
        log.setLevel(level)


class ArticleEmbedding:
    """Embeds articles with encoder ``name`` from ``model_dir`` on Ray (an ``EmbeddingCache``
    calls it with the articles the cache lacks); ``nodes`` collects the nodes that did it."""

    def __init__(self, name: str, model_dir: Path, *, actors: int, dataset_min: int, bar: Progress):
        self.name, self.model_dir = name, model_dir.resolve()  # workers run elsewhere: an absolute path
        self.actors, self.dataset_min, self.bar = actors, dataset_min, bar
        self.nodes: list[str] = []

    def __call__(self, articles: list[ArticleRecord]) -> np.ndarray:
        task = self.bar.add_task(f"embed {self.name}", total=len(articles))
        if len(articles) < self.dataset_min:
            vectors, nodes = run_task(encode_articles, self.name, self.model_dir, articles)
            self.bar.advance(task, len(articles))
        else:
            vectors, nodes = self._through_dataset(articles, task)
        self.nodes = sorted({*self.nodes, *nodes})
        return vectors

    def _through_dataset(self, articles: list[ArticleRecord], task) -> tuple[np.ndarray, list[str]]:
        rows = [{"position": n, "article": pickle.dumps(a)} for n, a in enumerate(articles)]
        batch = min(BATCH, -(-len(rows) // self.actors))  # a batch for every actor at least
        vectors: np.ndarray | None = None
        nodes: set[str] = set()
        with _quiet_data():
            encoded = ray.data.from_items(rows, override_num_blocks=-(-len(rows) // batch)).map_batches(
                BatchEncoder, fn_constructor_args=(self.name, self.model_dir), batch_size=batch,
                batch_format="numpy", compute=ActorPoolStrategy(size=self.actors), num_cpus=1)
            for batch in encoded.iter_batches(batch_size=None, batch_format="numpy"):
                if vectors is None:
                    vectors = np.zeros((len(articles), batch["vector"].shape[1]), np.float32)
                vectors[batch["position"]] = batch["vector"]
                nodes.update(batch["node"].tolist())
                self.bar.advance(task, len(batch["position"]))
        return vectors, sorted(nodes)
