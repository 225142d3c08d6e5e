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
    # Articles changed in SQL after this moment are not in the indexes yet (fastpath.catch_up):
    # a keyset cursor (change time, article id), since many articles share one change time.
    live_until: datetime | None = None
    live_until_id: str = ""
    # The build version asked for (what builds/ACTIVE named when it was read) and, when it is
    # not the one served (``version``), why: /readyz can tell "asked for X, serving Y".
    requested: str | None = None
    load_error: str | None = None
    _encoders: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, settings: Settings, directory: Path | None = None, *, fallback: bool = True) -> ServingState:
        """The build ``directory`` (default: the one ``builds/ACTIVE`` names), loaded whole.

        A build is served only when it loads without error: it matches its manifest
        (``BuildStore.verify``), its catalog, indexes and user models load, and its encoders load
        and encode (``warm``). When the asked-for build does not:

        * ``fallback=False`` (a reload, the nightly's check before publishing): raises
          ``BuildStore.Invalid``, and the caller keeps what it has.
        * ``fallback=True`` (a process starting): logs why and serves the most recently
          published build that loads (staged ``.tmp-*`` and rejected ``.rejected-*`` folders are
          never published versions, so never a fallback); with none, an empty state (fallback
          routes only). A corrupt build so never makes a worker crash at startup.

        ``requested`` is the version asked for, ``version`` the one served, ``load_error`` why
        they differ.
        """
        # Requests search a handful of vectors at a time: OpenMP threads cost more than they give
        # (measured 36 ms vs 5 ms per tag2vec request on 2 cores).
        faiss.omp_set_num_threads(1)
        store = BuildStore(settings.builds_dir)

        def empty(**fields) -> ServingState:
            return cls(settings, users=UserModels(top_tags=settings.profile_top_tags,
                                                  recent_clicks=settings.user_vector_clicks), **fields)

        def open_build(path: Path) -> ServingState:
            if not path.is_dir():
                raise BuildStore.Invalid(f"build {path.name} does not exist")
            problems = store.verify(path)
            if problems:
                raise BuildStore.Invalid(f"build {path.name}: " + "; ".join(problems))
            try:
                manifest = json.loads((path / "manifest.json").read_text())
                catalog = ItemCatalog.load(path / "catalog.jsonl")
                indexes = {}
                for index_dir in sorted((path / "indexes").glob("*")):
                    if (index_dir / "manifest.json").exists():
                        indexes[index_dir.name] = index = VectorIndex.load(index_dir)
                        index.bind(catalog)
                users = UserModels.load(path, settings.profile_top_tags, settings.user_vector_clicks)
                users.bind(catalog)
                state = cls(settings, manifest["version"], path, indexes, catalog, manifest, users,
                            live_until=datetime.fromisoformat(manifest["cutoff"]) if manifest.get("cutoff") else None,
                            requested=manifest["version"])
                state.warm()
            except Exception as exc:
                raise BuildStore.Invalid(f"build {path.name} does not load: {type(exc).__name__}: {exc}") from exc
            return state

        if directory is not None:
            requested = directory.name.removeprefix(BuildStore.STAGING)
        else:
            requested = store.active_version()
            directory = store.root / requested if requested else None
        if directory is not None:
            try:
                return open_build(directory)
            except BuildStore.Invalid as exc:
                if not fallback:
                    raise
                error = str(exc)
                log.error("build %s cannot be served: %s", requested, error)
        elif not fallback or not store.versions():
            return empty()  # nothing published yet
        else:
            error = "builds/ACTIVE names no build"
        for version in reversed(store.versions()):
            if version == requested:
                continue
            try:
                state = open_build(store.root / version)
            except BuildStore.Invalid as exc:
                log.error("fallback build %s cannot be served either: %s", version, exc)
                continue
            state.requested, state.load_error = requested, error
            log.warning("serving build %s instead of %s, which cannot be served", version, requested)
            return state
        log.error("no published build can be served; serving the fallback routes only")
        return empty(requested=requested, load_error=error)

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
