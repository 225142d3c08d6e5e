"""entity2vec: an article is the mean of its knowledge-graph entities' pre-trained vectors.

The vectors come from a file in MIND's ``entity_embedding.vec`` format (TransE embeddings of
Wikidata entities): one entity a line, its WikidataId then the numbers, separated by tabs.
Nothing is trained: ``fit`` reads the file, and the whole table is kept (not only the corpus's
entities) so that tomorrow's articles about a known entity are encoded too. An entity counts
once per article even when both the title and the abstract name it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import numpy as np

from encoders.base import TrainingCorpus
from recall.domain import ArticleRecord
from recall.index import normalise


def read_entity_vectors(path: Path, dim: int) -> tuple[list[str], np.ndarray, str]:
    """Entity ids, their (n, dim) float32 vectors, and a sha256 of the file's bytes."""
    digest = hashlib.sha256()
    table: dict[str, np.ndarray] = {}
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            digest.update(raw)
            fields = raw.decode("utf-8").split()
            if not fields:
                continue
            if len(fields) != dim + 1:
                raise ValueError(f"{path}:{line_no}: expected an entity id and {dim} numbers, "
                                 f"found {len(fields) - 1} numbers")
            table[fields[0]] = np.asarray(fields[1:], dtype=np.float32)
    ids = list(table)
    vectors = np.stack(list(table.values())) if ids else np.zeros((0, dim), np.float32)
    return ids, vectors, digest.hexdigest()


class EntityVectorEncoder:
    name = "entity2vec"

    def __init__(self, embeddings_path: str | Path, dim: int = 100):
        self.embeddings_path = str(embeddings_path)
        self.dim_ = dim
        self.version = "untrained"
        self.entity_ids_: list[str] = []
        self.vectors_: np.ndarray | None = None
        self.row_of_: dict[str, int] = {}

    @property
    def dim(self) -> int:
        return self.dim_

    def fit(self, corpus: TrainingCorpus) -> Self:
        ids, vectors, file_digest = read_entity_vectors(Path(self.embeddings_path), self.dim_)
        self._set_table(ids, vectors)
        self.version = hashlib.sha256(f"{self.dim_}:{file_digest}".encode()).hexdigest()[:16]
        return self

    def _set_table(self, ids: list[str], vectors: np.ndarray) -> None:
        self.entity_ids_ = ids
        self.vectors_ = vectors
        self.row_of_ = {entity: row for row, entity in enumerate(ids)}

    def encode(self, articles: Sequence[ArticleRecord]) -> np.ndarray:
        if self.vectors_ is None:
            raise RuntimeError(f"{self.name} is not fitted")
        out = np.zeros((len(articles), self.dim_), np.float32)
        for row, article in enumerate(articles):
            entities = dict.fromkeys(e.get("wikidata_id") for e in article.entities)
            rows = [self.row_of_[e] for e in entities if e in self.row_of_]
            if rows:
                out[row] = self.vectors_[rows].mean(axis=0)
        return normalise(out)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "vectors.npy", self.vectors_)
        (directory / "entity_ids.json").write_text(json.dumps(self.entity_ids_))
        (directory / "params.json").write_text(json.dumps(
            {"embeddings_path": self.embeddings_path, "dim": self.dim_, "version": self.version}))

    @classmethod
    def load(cls, directory: Path) -> Self:
        params = json.loads((directory / "params.json").read_text())
        version = params.pop("version")
        encoder = cls(**params)
        encoder._set_table(json.loads((directory / "entity_ids.json").read_text()),
                           np.load(directory / "vectors.npy"))
        encoder.version = version
        return encoder
