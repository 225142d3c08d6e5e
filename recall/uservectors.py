"""User vectors computed from a user's profile and recent clicks, online and in the nightly job.

Kinds (each also the name of the Redis key ``u:{user}:vec:{kind}`` and of a k-means scheme):

* ``tag`` (user2vec): the profile's top tags, their tag2vec vectors summed by weight. Lives in
  tag2vec's item space: it searches the tag2vec index directly.
* ``bnb``: blocks, each unit length then weighted, concatenated: the mean tag2vec vector of the
  recent clicks (first, so that a centre's first coordinates are an item-space query), their
  topics (subcategories hashed into ``TOPIC_BUCKETS``) and their categories (the build's list).
* ``lstm``: an LSTM over the tag2vec vectors of the recent clicks, trained to point at the next
  click (``encoders/user_lstm.py``); also in tag2vec's item space.
* ``dssm``: the DSSM user tower; needs article text the request path does not hold, so it comes
  from the nightly job only and is not computed here.

``UserModels`` is what a build holds for this (tag vectors, category list, LSTM, cluster models)
and is loaded by ``ServingState`` next to the indexes.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recall.catalog import ItemCatalog
from recall.clustering import ClusterModel
from recall.index import VectorIndex, normalise
from recall.profiles import UserProfile

TAG_ROUTE = "tag2vec"  # the item space of the tag, bnb and lstm kinds
TOPIC_BUCKETS = 32
# Squared-norm share of each bnb block: what was read weighs most, then topic, then category.
BNB_WEIGHTS = {"items": 0.6, "topics": 0.25, "categories": 0.15}


@dataclass
class TagVectors:
    """tag2vec's vector of every tag in the build's corpus."""

    tags: list[str]
    vectors: np.ndarray
    _rows: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rows = {t: i for i, t in enumerate(self.tags)}

    def weighted_sum(self, weighted: Sequence[tuple[str, float]]) -> np.ndarray | None:
        rows = [(self._rows[t], w) for t, w in weighted if t in self._rows and w > 0]
        if not rows:
            return None
        vector = np.zeros(self.vectors.shape[1], np.float32)
        for row, weight in rows:
            vector += weight * self.vectors[row]
        return vector

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "tag_vectors.npy", self.vectors)
        (directory / "tags.json").write_text(json.dumps(self.tags, ensure_ascii=False))

    @classmethod
    def load(cls, directory: Path) -> TagVectors:
        return cls(json.loads((directory / "tags.json").read_text(encoding="utf-8")),
                   np.load(directory / "tag_vectors.npy"))


@dataclass
class UserModels:
    tag_vectors: TagVectors | None = None
    categories: list[str] = field(default_factory=list)
    lstm: object | None = None  # encoders.user_lstm.ClickLSTMUserEncoder
    clusters: dict[str, ClusterModel] = field(default_factory=dict)
    top_tags: int = 20
    recent_clicks: int = 10

    @classmethod
    def load(cls, directory: Path | None, top_tags: int, recent_clicks: int) -> UserModels:
        users = directory / "users" if directory else None
        if users is None or not users.exists():
            return cls(top_tags=top_tags, recent_clicks=recent_clicks)
        tag_vectors = TagVectors.load(users) if (users / "tags.json").exists() else None
        categories = json.loads((users / "categories.json").read_text()) if (users / "categories.json").exists() else []
        lstm = None
        if (users / "lstm").exists():
            from encoders.user_lstm import ClickLSTMUserEncoder  # torch: only when a build has one

            lstm = ClickLSTMUserEncoder.load(users / "lstm")
        clusters = {path.stem: ClusterModel.load(users / "clusters", path.stem)
                    for path in sorted((users / "clusters").glob("*.npz"))} if (users / "clusters").exists() else {}
        return cls(tag_vectors, categories, lstm, clusters, top_tags, recent_clicks)

    def bind(self, catalog: ItemCatalog) -> None:
        """Map the cluster models' centre lists to ``catalog``'s rows (serving)."""
        for model in self.clusters.values():
            model.bind(catalog)

    def save(self, directory: Path) -> None:
        users = directory / "users"
        users.mkdir(parents=True, exist_ok=True)
        if self.tag_vectors is not None:
            self.tag_vectors.save(users)
        (users / "categories.json").write_text(json.dumps(self.categories))
        if self.lstm is not None:
            self.lstm.save(users / "lstm")
        for model in self.clusters.values():
            model.save(users / "clusters")

    # ---- vectors ----------------------------------------------------------------------
    def tag_vector(self, profile: UserProfile) -> np.ndarray | None:
        if self.tag_vectors is None or not profile:
            return None
        vector = self.tag_vectors.weighted_sum(profile.top_tags(self.top_tags))
        return None if vector is None else normalise(vector[None, :])[0]

    def click_vectors(self, clicks: Sequence[str], item_index: VectorIndex) -> np.ndarray:
        """Item vectors of the most recent clicks that have one, oldest first."""
        vectors = [v for v in (item_index.vector(i) for i in clicks[: self.recent_clicks]) if v is not None]
        if not vectors:
            return np.zeros((0, item_index.dim), np.float32)
        return np.stack(vectors[::-1]).astype(np.float32)

    def bnb_vector(self, clicks: Sequence[str], item_vectors: np.ndarray,
                   catalog: ItemCatalog) -> np.ndarray | None:
        if not len(item_vectors):
            return None
        topics = np.zeros(TOPIC_BUCKETS, np.float32)
        categories = np.zeros(max(len(self.categories), 1), np.float32)
        column = {c: i for i, c in enumerate(self.categories)}
        for item in clicks[: self.recent_clicks]:
            meta = catalog.get(item)
            if meta is None:
                continue
            if meta.subcategory or meta.category:
                topics[zlib.crc32((meta.subcategory or meta.category).encode()) % TOPIC_BUCKETS] += 1
            if meta.category in column:
                categories[column[meta.category]] += 1
        blocks = [(item_vectors.mean(axis=0), BNB_WEIGHTS["items"]), (topics, BNB_WEIGHTS["topics"]),
                  (categories, BNB_WEIGHTS["categories"])]
        return np.concatenate([normalise(b[None, :])[0] * np.sqrt(w) for b, w in blocks]).astype(np.float32)

    def vectors(self, profile: UserProfile, clicks: Sequence[str], item_index: VectorIndex | None,
                catalog: ItemCatalog, with_lstm: bool = True) -> dict[str, np.ndarray]:
        """Every online kind computable for one user (``clicks`` newest first); the nightly job
        passes ``with_lstm=False`` and runs the LSTM once over all users instead."""
        out = {}
        tag = self.tag_vector(profile)
        if tag is not None:
            out["tag"] = tag
        if item_index is not None:
            item_vectors = self.click_vectors(clicks, item_index)
            bnb = self.bnb_vector(clicks, item_vectors, catalog)
            if bnb is not None:
                out["bnb"] = bnb
            if with_lstm and self.lstm is not None and len(item_vectors):
                out["lstm"] = self.lstm.encode([item_vectors])[0]
        return out

    # ---- clusters ---------------------------------------------------------------------
    def memberships(self, vectors: dict[str, np.ndarray], profile: UserProfile) -> dict[str, list[str]]:
        """Online assignment to the build's fixed centres (and rule labels)."""
        out = {}
        for scheme, model in self.clusters.items():
            if model.kind == "rule":
                if profile:
                    out[scheme] = model.assign_rule(profile.interests(model.top_k))
            elif model.vector_kind in vectors and model.centres is not None:
                vector = vectors[model.vector_kind]
                if vector.shape[0] == model.centres.shape[1]:
                    out[scheme] = model.assign(vector[None, :])[0]
        return out
