"""What a serving process holds in memory: the active build's indexes, catalog and encoders."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import faiss

from recall.catalog import ItemCatalog
from recall.domain import ArticleRecord, to_unix
from recall.index import BuildStore, VectorIndex
from recall.settings import Settings
from recall.uservectors import UserModels

log = logging.getLogger(__name__)


@dataclass
class ServingState:
    settings: Settings
    version: str | None = None
    directory: Path | None = None
    indexes: dict[str, VectorIndex] = field(default_factory=dict)
    catalog: ItemCatalog = field(default_factory=ItemCatalog)
    manifest: dict[str, Any] = field(default_factory=dict)
    users: UserModels = field(default_factory=UserModels)
    # Articles changed in SQL after this moment are not in the indexes yet (fastpath.catch_up).
    live_until: datetime | None = None
    _encoders: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, settings: Settings) -> ServingState:
        """The active build, or an empty state (fallback routes only) when none is published."""
        # Requests search a handful of vectors at a time: OpenMP threads cost more than they give
        # (measured 36 ms vs 5 ms per tag2vec request on 2 cores).
        faiss.omp_set_num_threads(1)
        directory = BuildStore(settings.builds_dir).active_dir()
        if directory is None or not directory.exists():
            return cls(settings, users=UserModels(top_tags=settings.profile_top_tags,
                                                  recent_clicks=settings.user_vector_clicks))
        manifest = json.loads((directory / "manifest.json").read_text())
        catalog = ItemCatalog.load(directory / "catalog.jsonl")
        indexes = {}
        for index_dir in sorted((directory / "indexes").glob("*")):
            if (index_dir / "manifest.json").exists():
                indexes[index_dir.name] = index = VectorIndex.load(index_dir)
                index.bind(catalog)
        users = UserModels.load(directory, settings.profile_top_tags, settings.user_vector_clicks)
        users.bind(catalog)
        return cls(settings, manifest["version"], directory, indexes, catalog, manifest, users,
                   live_until=datetime.fromisoformat(manifest["cutoff"]) if manifest.get("cutoff") else None)

    @classmethod
    def in_memory(cls, settings: Settings, catalog: ItemCatalog, indexes: dict[str, VectorIndex],
                  users: UserModels | None = None, version: str | None = "in-memory") -> ServingState:
        """A serving state assembled from objects instead of a build folder (tests, tools):
        indexes are bound to the catalog and the i2i ones get their neighbour tables (no floor:
        the routes apply theirs)."""
        from recall.routes import ROUTES

        for name, index in indexes.items():
            spec = ROUTES.get(name)
            if spec is not None and spec.kind == "i2i" and index.neighbours is None:
                index.compute_neighbours(settings.neighbour_depth, -1.0)
            index.bind(catalog)
        users = users or UserModels(top_tags=settings.profile_top_tags, recent_clicks=settings.user_vector_clicks)
        users.bind(catalog)
        return cls(settings, version, None, indexes, catalog, users=users)

    @cached_property
    def cutoff_ts(self) -> float:
        """The build's cutoff in unix seconds (the reference time of the CF lists), or 0."""
        cutoff = self.manifest.get("cutoff")
        return to_unix(datetime.fromisoformat(cutoff)) if cutoff else 0.0

    def warm(self) -> list[str]:
        """Load every encoder the fast path will use and run it once, so the first posted
        article is encoded as fast as the next (torch and tokenizers initialise lazily)."""
        from recall.routes import ROUTES

        warmed = []
        probe = ArticleRecord(id="warm-up", title="warm up", body="warm up", category="news",
                              tags=(("news", 1.0),))
        for route in self.indexes:
            spec = ROUTES.get(route)
            encoder = self.encoder(spec.encoder) if spec and spec.encoder else None
            if encoder is not None:
                encoder.encode([probe])
                warmed.append(spec.encoder)
        return warmed

    def encoder(self, name: str):
        """The build's frozen encoder ``name`` (loaded on first use), or None if absent."""
        with self._lock:
            if name not in self._encoders:
                from encoders.registry import (
                    load_encoder,  # only the fast path needs encoders
                )

                model_dir = self.directory / "models" / name if self.directory else None
                self._encoders[name] = load_encoder(name, model_dir) if model_dir and model_dir.exists() else None
            return self._encoders[name]
