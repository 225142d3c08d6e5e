"""Vector indexes (FAISS) and the versioned build directories that hold them.

A build is one directory ``builds/{version}/`` written by the nightly job::

    manifest.json                 version, built_at, routes and encoders in the build
    catalog.jsonl                 article metadata the filters need (category, times, status)
    models/{encoder}/...          trained encoders
    indexes/{route}/index.faiss   one FAISS index per vector route
    indexes/{route}/ids.json      row -> article id
    indexes/{route}/manifest.json route, encoder, encoder version, count, dim, built_at

It is written under ``builds/.tmp-{version}`` and renamed into place when complete; the file
``builds/ACTIVE`` names the serving version and is replaced atomically (``os.replace``), so a
reader sees either the old build or the new one, never half of one. A crashed job leaves only a
``.tmp-*`` directory behind, which the next run removes.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import faiss
import numpy as np


def normalise(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise rows (so inner product is cosine); all-zero rows stay zero."""
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)


class VectorIndex:
    """Exact inner-product search over L2-normalised vectors, with string ids and live adds."""

    def __init__(self, dim: int, manifest: dict[str, Any] | None = None):
        self.dim = dim
        self.manifest = dict(manifest or {})
        self.ids: list[str] = []
        self.row_of: dict[str, int] = {}
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def build(cls, ids: Sequence[str], vectors: np.ndarray, **manifest: Any) -> VectorIndex:
        vectors = normalise(vectors)
        index = cls(vectors.shape[1], manifest)
        index.add(ids, vectors)
        return index

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> int:
        """Add or replace vectors; rows that are all zero (nothing to encode) are skipped."""
        vectors = normalise(vectors)
        keep = np.linalg.norm(vectors, axis=1) > 0
        with self._lock:
            replaced = [self.row_of[i] for i, k in zip(ids, keep) if k and i in self.row_of]
            if replaced:
                self._index.remove_ids(np.asarray(replaced, dtype=np.int64))
            rows = []
            for item_id, k in zip(ids, keep):
                if not k:
                    continue
                row = self.row_of.get(item_id)
                if row is None:
                    row = len(self.ids)
                    self.ids.append(item_id)
                    self.row_of[item_id] = row
                rows.append(row)
            if rows:
                self._index.add_with_ids(vectors[keep], np.asarray(rows, dtype=np.int64))
            self.manifest["count"] = len(self.ids)
        return len(rows)

    def vector(self, item_id: str) -> np.ndarray | None:
        row = self.row_of.get(item_id)
        if row is None:
            return None
        with self._lock:
            return self._index.reconstruct(row)

    def search(self, queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """For each query row, up to k (id, cosine) pairs, best first."""
        if not len(self.ids) or k <= 0:
            return [[] for _ in range(len(queries))]
        q = normalise(np.atleast_2d(queries))
        with self._lock:
            scores, rows = self._index.search(q, min(k, len(self.ids)))
        return [
            [(self.ids[r], float(s)) for s, r in zip(srow, rrow) if r >= 0]
            for srow, rrow in zip(scores, rows)
        ]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            faiss.write_index(self._index, str(directory / "index.faiss"))
            (directory / "ids.json").write_text(json.dumps(self.ids))
            manifest = {**self.manifest, "dim": self.dim, "count": len(self.ids)}
        (directory / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))

    @classmethod
    def load(cls, directory: Path) -> VectorIndex:
        manifest = json.loads((directory / "manifest.json").read_text())
        index = cls(int(manifest["dim"]), manifest)
        index._index = faiss.read_index(str(directory / "index.faiss"))
        index.ids = json.loads((directory / "ids.json").read_text())
        index.row_of = {item_id: row for row, item_id in enumerate(index.ids)}
        return index


def utcnow_iso() -> str:
    return datetime.now(timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds")


@dataclass(frozen=True)
class BuildStore:
    """Versioned build directories with an atomically switched ACTIVE pointer."""

    root: Path
    keep: int = 3

    @property
    def pointer(self) -> Path:
        return self.root / "ACTIVE"

    def start(self, version: str) -> Path:
        """A fresh staging directory for a build; leftovers of crashed builds are removed."""
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        staging = self.root / f".tmp-{version}"
        staging.mkdir()
        return staging

    def publish(self, staging: Path) -> str:
        version = staging.name.removeprefix(".tmp-")
        final = self.root / version
        os.replace(staging, final)
        tmp_pointer = self.root / f".ACTIVE.{os.getpid()}"
        tmp_pointer.write_text(version)
        os.replace(tmp_pointer, self.pointer)
        self._prune(version)
        return version

    def active_version(self) -> str | None:
        try:
            return self.pointer.read_text().strip() or None
        except FileNotFoundError:
            return None

    def active_dir(self) -> Path | None:
        version = self.active_version()
        return self.root / version if version else None

    def versions(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def _prune(self, active: str) -> None:
        old = [v for v in self.versions() if v != active]
        for version in old[: max(len(old) - (self.keep - 1), 0)]:
            shutil.rmtree(self.root / version, ignore_errors=True)
