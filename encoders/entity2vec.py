"""entity2vec: an article is the mean of its knowledge-graph entities' pre-trained vectors.

The vectors come from a file in MIND's ``entity_embedding.vec`` format (TransE embeddings of
Wikidata entities): one entity a line, its WikidataId then the numbers, separated by tabs.
Nothing is trained: ``fit`` reads the file (``encode`` does on first use when nothing did), and
the whole table is kept, also by ``save`` (not only the corpus's entities), so that tomorrow's
articles about a known entity are encoded too and a saved model needs the file no more. An entity counts
once per article even when both the title and the abstract name it. An article whose entities
cannot be read (one that is not an object, a ``wikidata_id`` that is not text) is a zero row,
counted in ``skipped``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import numpy as np

from encoders.base import SkipsUnreadable, TrainingCorpus
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


def entity_ids(article: ArticleRecord) -> list[str]:
    """The article's Wikidata ids, each once, in order; TypeError for entities it cannot read."""
    ids = []
    for entity in article.entities:
        if not isinstance(entity, dict):
            raise TypeError(f"an entity is {type(entity).__name__}, not an object")
        entity_id = entity.get("wikidata_id")
        if entity_id is not None and not isinstance(entity_id, str):
            raise TypeError(f"wikidata_id is {type(entity_id).__name__}, not text")
        if entity_id:
            ids.append(entity_id)
    return list(dict.fromkeys(ids))


class EntityVectorEncoder(SkipsUnreadable):
    name = "entity2vec"
    requires_fit = False  # the vectors are given: encode reads the file when fit has not

    def __init__(self, embeddings_path: str | Path, dim: int = 100):
        self.embeddings_path = str(embeddings_path)
        self.dim_ = dim
        self.version = "unloaded"
        self.entity_ids_: list[str] = []
        self.vectors_: np.ndarray | None = None
        self.row_of_: dict[str, int] = {}

    @property
    def dim(self) -> int:
        return self.dim_

    def params(self) -> dict:
        return {"embeddings_path": self.embeddings_path, "dim": self.dim_}

    def fit(self, corpus: TrainingCorpus) -> Self:
        self._read()
        return self

    def _read(self) -> None:
        ids, vectors, file_digest = read_entity_vectors(Path(self.embeddings_path), self.dim_)
        self._set_table(ids, vectors)
        self.version = hashlib.sha256(f"{self.dim_}:{file_digest}".encode()).hexdigest()[:16]

    def _ready(self) -> np.ndarray:
        if self.vectors_ is None:
            self._read()
        return self.vectors_

    def _set_table(self, ids: list[str], vectors: np.ndarray) -> None:
        self.entity_ids_ = ids
        self.vectors_ = vectors
        self.row_of_ = {entity: row for row, entity in enumerate(ids)}

    def encode(self, articles: Sequence[ArticleRecord]) -> np.ndarray:
        vectors = self._ready()
        out = np.zeros((len(articles), self.dim_), np.float32)
        for row, article in enumerate(articles):
            rows = [self.row_of_[e] for e in self._readable(entity_ids, article, []) if e in self.row_of_]
            if rows:
                out[row] = vectors[rows].mean(axis=0)
        return normalise(out)

    def save(self, directory: Path) -> None:
        vectors = self._ready()
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "vectors.npy", vectors)
        (directory / "entity_ids.json").write_text(json.dumps(self.entity_ids_))
        (directory / "params.json").write_text(json.dumps({**self.params(), "version": self.version}))

    @classmethod
    def load(cls, directory: Path) -> Self:
        params = json.loads((directory / "params.json").read_text())
        version = params.pop("version")
        encoder = cls(**params)
        encoder._set_table(json.loads((directory / "entity_ids.json").read_text()),
                           np.load(directory / "vectors.npy"))
        encoder.version = version
        return encoder
