"""What lets a nightly run skip work the previous run already did.

* Training: an encoder's training inputs are the corpus and its hyper-parameters (``params()``);
  when their fingerprint equals the one the active build recorded, its trained model is copied,
  not retrained. When only the corpus changed (same ``params_key``), the nightly warm-starts
  the new model from it instead (``jobs/nightly.warm_start``).
* Embedding: vectors are cached by (encoder name, encoder version, article content hash), so a
  run re-embeds only new or changed articles (and every article once the encoder's version moves).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from encoders.base import Encoder, TrainingCorpus
from recall.domain import ArticleRecord
from recall.sqlstore import content_hash


def corpus_fingerprint(corpus: TrainingCorpus) -> str:
    digest = hashlib.sha256()
    for aid in sorted(corpus.articles):
        digest.update(f"{aid}\t{content_hash(corpus.articles[aid])}\n".encode())
    for user in sorted(corpus.click_sequences):
        digest.update(f"{user}\t{' '.join(corpus.click_sequences[user])}\n".encode())
    return digest.hexdigest()


def _configuration(encoder: Encoder) -> str:
    return json.dumps({"encoder": type(encoder).__name__, "params": encoder.params()}, sort_keys=True)


def params_key(encoder: Encoder) -> str:
    """The fingerprint of an encoder's class and ``params()``: what a model must share with
    today's encoder to be warm-started from (the corpus may differ)."""
    return hashlib.sha256(_configuration(encoder).encode()).hexdigest()[:16]


def training_key(encoder: Encoder, corpus_digest: str) -> str:
    """The fingerprint of a training's inputs: the corpus, the encoder's class and its
    ``params()`` (and nothing else, so a knob it leaves out, such as a thread count, never forces
    a retraining)."""
    return hashlib.sha256(f"{corpus_digest}\n{_configuration(encoder)}".encode()).hexdigest()[:16]


class EmbeddingCache:
    """One file per encoder: ids, content hashes and vectors of its current version."""

    def __init__(self, root: Path):
        self.root = root

    def embed(self, encoder, articles: Sequence[ArticleRecord],
              encode: Callable[[list[ArticleRecord]], np.ndarray]) -> tuple[np.ndarray, int]:
        """Vectors for ``articles`` (in order) and how many came from the cache."""
        path = self.root / encoder.name / f"{encoder.version}.npz"
        cached: dict[tuple[str, str], np.ndarray] = {}
        if path.exists():
            data = np.load(path)
            cached = {(i, h): v for i, h, v in zip(data["ids"], data["hashes"], data["vectors"])}
        hashes = [content_hash(a) for a in articles]
        missing = [n for n, (a, h) in enumerate(zip(articles, hashes)) if (a.id, h) not in cached]
        vectors = np.zeros((len(articles), encoder.dim), np.float32)
        if missing:
            vectors[missing] = encode([articles[n] for n in missing])
        for n, (a, h) in enumerate(zip(articles, hashes)):
            if (a.id, h) in cached:
                vectors[n] = cached[(a.id, h)]
        path.parent.mkdir(parents=True, exist_ok=True)
        for old in path.parent.glob("*.npz"):  # only the current version is worth keeping
            old.unlink()
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, ids=np.array([a.id for a in articles]), hashes=np.array(hashes), vectors=vectors)
        tmp.replace(path)
        return vectors, len(articles) - len(missing)
