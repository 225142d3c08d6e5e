"""Vector indexes (FAISS) and the versioned build directories that hold them.

A build is one directory ``builds/{version}/`` written by the nightly job::

    manifest.json                 version, built_at, routes and encoders in the build
    catalog.jsonl                 article metadata the filters need (category, times, status)
    models/{encoder}/...          trained encoders
    indexes/{route}/vectors.npy   one index per vector route: L2-normalised vectors (mmap)
    indexes/{route}/ids.json      row -> article id
    indexes/{route}/ann.faiss     an HNSW graph, for indexes searched at request time when large
    indexes/{route}/neighbours/   i2i routes: every article's precomputed neighbours (CSR, mmap)
    indexes/{route}/manifest.json route, encoder, encoder version, count, dim, built_at, ANN recall

It is written under ``builds/.tmp-{version}``, checked against its manifest (``verify``) and
renamed into place when complete; the file ``builds/ACTIVE`` names the serving version and is
replaced atomically (``os.replace``), so a reader sees either the old build or the new one, never
half of one. A build that fails the check is set aside as ``builds/.rejected-{version}`` and never
published. Staging and rejected directories start with a dot: they are never a published version,
so nothing serves or falls back to them.

Only the nightly job stages builds, and only holding its lock (``jobs.runs.RunLock``). A job
removes its own staging directory when it fails; a killed one leaves it behind, and the next run,
holding the lock and so sure that no other run is alive, sweeps it (``sweep``). ``start`` never
touches another directory: it may be a running job's.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
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


def mapped(path: Path) -> np.ndarray:
    """A read-only memory-mapped array, as a plain ndarray: slicing a ``np.memmap`` runs Python
    code per slice, slicing an ndarray view of the same pages does not."""
    return np.load(path, mmap_mode="r").view(np.ndarray)


@dataclass(frozen=True)
class NeighbourTable:
    """Each build article's nearest neighbours in one index, above a cosine floor, best first:
    CSR arrays over index rows (``offsets[r]:offsets[r + 1]`` are row r's), memory-mapped."""

    offsets: np.ndarray  # int64, rows + 1
    rows: np.ndarray  # int32 index rows
    sims: np.ndarray  # float32 cosines
    depth: int
    floor: float

    def of(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.offsets[row], self.offsets[row + 1]
        return self.rows[start:end], self.sims[start:end]

    @classmethod
    def compute(cls, vectors: np.ndarray, depth: int, floor: float, lo: int = 0, hi: int | None = None,
                batch: int = 2048) -> NeighbourTable:
        """Exact search of rows ``[lo, hi)`` (default: every row) against all rows (faiss,
        blocked), itself left out. A table of part of the rows is a shard: its offsets count
        from its first row, its neighbours are rows of the whole index (``concatenate``)."""
        hi = len(vectors) if hi is None else min(hi, len(vectors))
        parts_rows, parts_sims, counts = [], [], []
        k = min(depth + 1, len(vectors))
        for start in range(lo, hi, batch):
            sims, rows = faiss.knn(np.ascontiguousarray(vectors[start:min(start + batch, hi)]), vectors, k,
                                   metric=faiss.METRIC_INNER_PRODUCT)
            own = np.arange(start, start + len(rows))[:, None]
            keep = (rows >= 0) & (rows != own) & (sims >= floor)
            keep &= np.cumsum(keep, axis=1) <= depth
            parts_rows.append(rows[keep].astype(np.int32))
            parts_sims.append(sims[keep].astype(np.float32))
            counts.append(keep.sum(axis=1))
        return cls._from_counts(counts, parts_rows, parts_sims, depth, floor)

    @classmethod
    def concatenate(cls, shards: Sequence[NeighbourTable]) -> NeighbourTable:
        """The table of consecutive shards (``compute`` of rows ``[lo, hi)`` each), in order."""
        if not shards:
            raise ValueError("no shard to concatenate")
        return cls._from_counts([np.diff(s.offsets) for s in shards], [s.rows for s in shards],
                             [s.sims for s in shards], shards[0].depth, shards[0].floor)

    @classmethod
    def _from_counts(cls, counts: Sequence[np.ndarray], rows: Sequence[np.ndarray], sims: Sequence[np.ndarray],
                  depth: int, floor: float) -> NeighbourTable:
        offsets = np.zeros(sum(len(c) for c in counts) + 1, np.int64)
        if counts:
            np.cumsum(np.concatenate(counts), out=offsets[1:])
        return cls(offsets, np.concatenate(rows) if rows else np.zeros(0, np.int32),
                   np.concatenate(sims) if sims else np.zeros(0, np.float32), depth, floor)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name in ("offsets", "rows", "sims"):
            np.save(directory / f"{name}.npy", getattr(self, name))
        (directory / "table.json").write_text(json.dumps({"depth": self.depth, "floor": self.floor}))

    @classmethod
    def load(cls, directory: Path) -> NeighbourTable:
        meta = json.loads((directory / "table.json").read_text())
        return cls(*(mapped(directory / f"{name}.npy") for name in ("offsets", "rows", "sims")),
                   depth=int(meta["depth"]), floor=float(meta["floor"]))


@dataclass(frozen=True)
class LiveDelta:
    """Articles added after the build (the fast path): searched exactly, never written into the
    build's files. Replaced whole on every change (copy on write), so a reader holding one
    sees it consistent."""

    ids: tuple[str, ...] = ()
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    # Per delta article, its neighbours among the build's rows (index rows, cosines).
    neighbours: tuple[tuple[np.ndarray, np.ndarray], ...] = ()
    catalog_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))

    def __len__(self) -> int:
        return len(self.ids)

    def position(self, item_id: str) -> int | None:
        try:
            return self.ids.index(item_id)
        except ValueError:
            return None


def top_k_rows(sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query row, the k best (positions, sims), best first; -1 / -inf pad short rows."""
    m, width = sims.shape
    if width == 0 or k <= 0:
        return np.full((m, max(k, 0)), -1, np.int64), np.full((m, max(k, 0)), -np.inf, np.float32)
    kk = min(k, width)
    part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk] if kk < width else np.tile(np.arange(width), (m, 1))
    part_sims = np.take_along_axis(sims, part, axis=1)
    order = np.argsort(-part_sims, axis=1, kind="stable")
    rows, best = np.take_along_axis(part, order, axis=1), np.take_along_axis(part_sims, order, axis=1)
    if kk < k:
        rows = np.pad(rows, ((0, 0), (0, k - kk)), constant_values=-1)
        best = np.pad(best, ((0, 0), (0, k - kk)), constant_values=-np.inf)
    return rows, best.astype(np.float32)


class AnnIndex:
    """HNSW over the distinct vectors of an index, and which rows hold each. Identical vectors
    are common (articles with the same top tags, the same media): an HNSW graph full of copies
    cannot navigate among them (measured recall@100 0.80 at efSearch 4096 with 100 copies each),
    one node per distinct vector can."""

    def __init__(self, hnsw: faiss.Index, offsets: np.ndarray, rows: np.ndarray):
        self.hnsw, self.offsets, self.rows = hnsw, offsets, rows

    @classmethod
    def build(cls, vectors: np.ndarray) -> AnnIndex:
        distinct, inverse = np.unique(np.asarray(vectors), axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        hnsw = faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = 200
        hnsw.add(np.ascontiguousarray(distinct, dtype=np.float32))
        offsets = np.zeros(len(distinct) + 1, np.int64)
        np.cumsum(np.bincount(inverse, minlength=len(distinct)), out=offsets[1:])
        return cls(hnsw, offsets, np.argsort(inverse, kind="stable").astype(np.int32))

    @property
    def ef_search(self) -> int:
        return self.hnsw.hnsw.efSearch

    @ef_search.setter
    def ef_search(self, ef: int) -> None:
        self.hnsw.hnsw.efSearch = ef

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(sims, rows) of the k nearest rows per query, -1 padded: the nearest distinct vectors,
        each expanded to the rows holding it."""
        sims, distinct = self.hnsw.search(queries, min(k, self.hnsw.ntotal))
        out_rows = np.full((len(queries), k), -1, np.int64)
        out_sims = np.full((len(queries), k), -np.inf, np.float32)
        for q in range(len(queries)):
            found = distinct[q][distinct[q] >= 0]
            lengths = self.offsets[found + 1] - self.offsets[found]
            at = np.repeat(self.offsets[found] - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
            rows = self.rows[at[:k]]
            out_rows[q, : len(rows)] = rows
            out_sims[q, : len(rows)] = np.repeat(sims[q][distinct[q] >= 0], lengths)[:k]
        return out_sims, out_rows

    def save(self, directory: Path, ef: int) -> None:
        faiss.write_index(self.hnsw, str(directory / "ann.faiss"))
        np.savez(directory / "ann_groups.npz", offsets=self.offsets, rows=self.rows)

    @classmethod
    def load(cls, directory: Path, ef: int) -> AnnIndex:
        hnsw = faiss.read_index(str(directory / "ann.faiss"))
        hnsw.hnsw.efSearch = ef
        with np.load(directory / "ann_groups.npz") as groups:
            return cls(hnsw, groups["offsets"], groups["rows"])


class VectorIndex:
    """L2-normalised vectors of one encoder, searched by inner product (= cosine).

    The build part is immutable and memory-mapped: ``vectors.npy`` (rows 0..built-1), an HNSW
    graph over them when the index is large (``ann``), and for i2i routes a precomputed
    ``NeighbourTable``. Articles the fast path adds go to a small ``LiveDelta`` (rows
    built..len-1), searched exactly and merged into every answer. Index rows are not catalog
    rows: ``catalog_rows`` maps them once the index is bound to a build's catalog.
    """

    def __init__(self, ids: Sequence[str], vectors: np.ndarray, manifest: dict[str, Any] | None = None,
                 ann: AnnIndex | None = None, neighbours: NeighbourTable | None = None):
        self.ids = list(ids)
        self.row_of = {item_id: row for row, item_id in enumerate(self.ids)}
        self.vectors = vectors
        self.dim = int(vectors.shape[1])
        self.manifest = dict(manifest or {})
        self.ann = ann
        self.neighbours = neighbours
        self.delta = LiveDelta(vectors=np.zeros((0, self.dim), np.float32))
        self.catalog = None  # recall.catalog.ItemCatalog, once bound
        self.catalog_rows = np.zeros(0, np.int32)  # build row -> catalog row
        self._write = threading.Lock()

    def bind(self, catalog) -> None:
        """Map the index's rows to ``catalog``'s (the serving build's): routes return catalog rows."""
        self.catalog = catalog
        self.catalog_rows = catalog.ensure(self.ids)

    def to_catalog(self, rows: np.ndarray, delta: LiveDelta) -> np.ndarray:
        rows = np.asarray(rows, np.int64)
        out = np.empty(len(rows), np.int32)
        built = rows < self.built
        out[built] = self.catalog_rows[rows[built]]
        out[~built] = delta.catalog_rows[rows[~built] - self.built]
        return out

    @property
    def built(self) -> int:
        return len(self.ids)

    def __len__(self) -> int:
        return len(self.ids) + len(self.delta)

    def __contains__(self, item_id: str) -> bool:
        return self.row(item_id) is not None

    @classmethod
    def build(cls, ids: Sequence[str], vectors: np.ndarray, **manifest: Any) -> VectorIndex:
        """An index of the rows that have a vector (all-zero rows: nothing to encode, skipped)."""
        vectors = normalise(vectors)
        keep = np.linalg.norm(vectors, axis=1) > 0
        return cls([i for i, k in zip(ids, keep) if k], np.ascontiguousarray(vectors[keep]),
                   {**manifest, "count": int(keep.sum())})

    # ---- rows and vectors -----------------------------------------------------------------
    def row(self, item_id: str, delta: LiveDelta | None = None) -> int | None:
        row = self.row_of.get(item_id)
        if row is not None:
            return row
        position = (delta or self.delta).position(item_id)
        return None if position is None else self.built + position

    def id_of(self, row: int, delta: LiveDelta | None = None) -> str:
        return self.ids[row] if row < self.built else (delta or self.delta).ids[row - self.built]

    def vector(self, item_id: str) -> np.ndarray | None:
        delta = self.delta
        row = self.row(item_id, delta)
        if row is None:
            return None
        return np.array(self.vectors[row] if row < self.built else delta.vectors[row - self.built])

    def vectors_at(self, rows: Sequence[int], delta: LiveDelta) -> np.ndarray:
        return np.stack([self.vectors[r] if r < self.built else delta.vectors[r - self.built] for r in rows]) \
            if len(rows) else np.zeros((0, self.dim), np.float32)

    # ---- search ---------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, delta: LiveDelta | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """For each query row, the k nearest (index rows, cosines), best first; -1 / -inf pad
        rows that have fewer. The build part by HNSW when it has one (exact below the size
        threshold), the live delta exactly."""
        delta = delta or self.delta
        q = normalise(np.atleast_2d(queries))
        if k <= 0 or not len(q):
            return np.zeros((len(q), 0), np.int64), np.zeros((len(q), 0), np.float32)
        if self.ann is not None:
            sims, rows = self.ann.search(q, k)
            if len(delta):
                rows = np.concatenate([rows, self.built + np.arange(len(delta))[None, :].repeat(len(q), 0)], axis=1)
                sims = np.concatenate([sims, q @ delta.vectors.T], axis=1)
            sims = np.where(rows >= 0, sims, -np.inf)
            best, best_sims = top_k_rows(sims, k)
            return np.where(best >= 0, np.take_along_axis(rows, np.maximum(best, 0), axis=1), -1), best_sims
        # Exact below the ANN threshold: one matrix product over build and delta (numpy beats
        # faiss' knn for a handful of queries; measured 0.1 against 0.3 ms at 2k rows).
        sims = q @ self.vectors.T
        if len(delta):
            sims = np.concatenate([sims, q @ delta.vectors.T], axis=1)
        return top_k_rows(sims, k)

    # ---- the live delta ---------------------------------------------------------------------
    def add(self, ids: Sequence[str], vectors: np.ndarray) -> int:
        """Add articles published after the build to the live delta (a new vector replaces an
        earlier delta one). Articles the build already holds keep their build vector until the
        next build; all-zero rows (nothing to encode) are skipped. Returns how many were added."""
        vectors = normalise(vectors)
        with self._write:
            delta = self.delta
            kept = {item_id: v for item_id, v in zip(ids, vectors)
                    if item_id not in self.row_of and np.any(v)}
            if not kept:
                return 0
            keep_old = [n for n, item_id in enumerate(delta.ids) if item_id not in kept]
            new_vectors = np.stack(list(kept.values())).astype(np.float32)
            own = self._build_neighbours(new_vectors)
            new_rows = self.catalog.ensure(list(kept)) if self.catalog is not None else np.zeros(len(kept), np.int32)
            self.delta = LiveDelta(
                tuple(delta.ids[n] for n in keep_old) + tuple(kept),
                np.concatenate([delta.vectors[keep_old], new_vectors]),
                tuple(delta.neighbours[n] for n in keep_old) + own,
                np.concatenate([delta.catalog_rows[keep_old], new_rows]).astype(np.int32))
            self.manifest["count"] = len(self)
        return len(kept)

    def _build_neighbours(self, vectors: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
        """New articles' neighbours among the build's rows, as the build's table holds them."""
        table = self.neighbours
        if table is None or not self.built:
            return tuple((np.zeros(0, np.int32), np.zeros(0, np.float32)) for _ in vectors)
        sims, rows = faiss.knn(vectors, self.vectors, min(table.depth, self.built),
                               metric=faiss.METRIC_INNER_PRODUCT)
        return tuple((r[(r >= 0) & (s >= table.floor)].astype(np.int32), s[(r >= 0) & (s >= table.floor)])
                     for r, s in zip(rows, sims))

    # ---- build-time structures ------------------------------------------------------------------
    def compute_neighbours(self, depth: int, floor: float) -> NeighbourTable:
        self.neighbours = NeighbourTable.compute(self.vectors, depth, floor)
        return self.neighbours

    def build_ann(self, threshold: int, min_recall: float, seed: int = 7, sample: int = 200) -> dict[str, Any]:
        """An HNSW graph over the build part when it holds more than ``threshold`` vectors.
        Its recall@100 against exact search on a sample of the index's own vectors is measured
        (a hit: as close as the exact 100th, so that ties count), and efSearch doubled until it
        reaches ``min_recall``; both are recorded."""
        if self.built <= threshold:
            self.ann = None
            self.manifest["ann"] = None
            return {"ann": "exact", "count": self.built}
        ann = AnnIndex.build(self.vectors)
        rng = np.random.default_rng(seed)
        queries = np.ascontiguousarray(self.vectors[np.sort(rng.choice(self.built, min(sample, self.built), replace=False))])
        k = min(100, self.built)
        exact_sims, _ = faiss.knn(queries, self.vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
        # A found vector counts when it is as close as the exact k-th: among vectors tied at the
        # same similarity (near-duplicates are common in news) exact search's pick is arbitrary.
        kth = exact_sims[:, -1:] - 1e-5
        ef, recall = 64, 0.0
        while True:
            ann.ef_search = ef
            approx_sims, approx = ann.search(queries, k)
            recall = float(((approx_sims >= kth) & (approx >= 0)).sum() / approx.size)
            if recall >= min_recall or ef >= 4096:
                break
            ef *= 2
        self.ann = ann
        info = {"kind": "hnsw", "M": 32, "efConstruction": 200, "efSearch": ef,
                "recall_at_100": round(recall, 4), "sample": len(queries),
                "distinct_vectors": int(ann.hnsw.ntotal)}
        self.manifest["ann"] = info
        return {"ann": "hnsw", "count": self.built, **info}

    # ---- files -----------------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "vectors.npy", np.ascontiguousarray(self.vectors, dtype=np.float32))
        (directory / "ids.json").write_text(json.dumps(self.ids))
        if self.ann is not None:
            self.ann.save(directory, self.ann.ef_search)
        if self.neighbours is not None:
            self.neighbours.save(directory / "neighbours")
        manifest = {**self.manifest, "dim": self.dim, "count": self.built,
                    "neighbour_depth": self.neighbours.depth if self.neighbours else None}
        (directory / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))

    @classmethod
    def load(cls, directory: Path) -> VectorIndex:
        manifest = json.loads((directory / "manifest.json").read_text())
        ann = None
        if (directory / "ann.faiss").exists():
            ann = AnnIndex.load(directory, int((manifest.get("ann") or {}).get("efSearch", 128)))
        neighbours = NeighbourTable.load(directory / "neighbours") if (directory / "neighbours").exists() else None
        return cls(json.loads((directory / "ids.json").read_text()),
                   mapped(directory / "vectors.npy"), manifest, ann, neighbours)


def utcnow_iso() -> str:
    return datetime.now(timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds")


@dataclass(frozen=True)
class BuildStore:
    """Versioned build directories with an atomically switched ACTIVE pointer."""

    root: Path
    keep: int = 3

    STAGING = ".tmp-"
    REJECTED = ".rejected-"

    class Invalid(Exception):
        """A build that does not match its manifest, or does not load."""

    @property
    def pointer(self) -> Path:
        return self.root / "ACTIVE"

    def start(self, version: str) -> Path:
        """A fresh staging directory ``.tmp-{version}`` for one build. Nothing else is touched:
        another staging directory may be a running job's (leftovers go with ``sweep``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f"{self.STAGING}{version}"
        staging.mkdir()  # versions are unique: an existing one is somebody else's
        return staging

    def discard(self, staging: Path) -> None:
        """Remove one's own staging directory (a build that failed before publishing)."""
        if staging.name.startswith(self.STAGING):
            shutil.rmtree(staging, ignore_errors=True)

    def sweep(self, keep_rejected: int = 1) -> list[str]:
        """Remove what dead jobs left: every staging directory, temporary pointer files, and
        rejected builds but the newest ``keep_rejected``; returns the names removed.

        Only for a caller holding the nightly lock (``jobs.runs.RunLock``): a build is staged
        only under that lock, so while one holds it every staging directory is a dead run's (a
        killed one's, or one whose lock was lost; that one checks the lock before publishing and
        fails). Without the lock, a running job's half-written build would be deleted under it.
        """
        if not self.root.exists():
            return []
        removed = []
        rejected = sorted(p for p in self.root.glob(f"{self.REJECTED}*") if p.is_dir())
        for path in [*self.root.glob(f"{self.STAGING}*"), *rejected[: max(len(rejected) - keep_rejected, 0)]]:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
        for path in self.root.glob(".ACTIVE.*"):
            path.unlink(missing_ok=True)
            removed.append(path.name)
        return sorted(removed)

    def reject(self, staging: Path, problems: Sequence[str]) -> Path:
        """Set a staged build that failed verification aside as ``.rejected-{version}`` (with
        the reasons in ``REJECTED.txt``), where nothing serves or falls back to it."""
        version = staging.name.removeprefix(self.STAGING)
        (staging / "REJECTED.txt").write_text("\n".join(problems) + "\n")
        target = self.root / f"{self.REJECTED}{version}"
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
        return target

    def verify(self, directory: Path) -> list[str]:
        """What is wrong with a build (staged or published) against its manifest; empty when
        nothing is: the manifest names this version; the catalog is there with the manifest's
        article count; every route in the manifest has its index files (vectors, ids, manifest;
        the neighbour table and the HNSW graph when its manifest has them) with its count, and
        its encoder is in the manifest; every encoder has a non-empty model folder; no index is
        on disk that the manifest does not list."""
        try:
            manifest = json.loads((directory / "manifest.json").read_text())
        except (OSError, ValueError) as exc:
            return [f"manifest.json unreadable: {exc}"]
        if not isinstance(manifest, dict):
            return ["manifest.json is not an object"]
        problems = []
        version = directory.name.removeprefix(self.STAGING)
        if manifest.get("version") != version:
            problems.append(f"manifest names version {manifest.get('version')!r}, the folder {version!r}")
        counts = manifest.get("counts") or {}
        try:
            with (directory / "catalog.jsonl").open("rb") as fh:
                items = sum(1 for line in fh if line.strip())
            if "articles" in counts and items != counts["articles"]:
                problems.append(f"catalog holds {items} articles, the manifest {counts['articles']}")
        except OSError as exc:
            problems.append(f"catalog.jsonl unreadable: {exc}")
        routes, encoders = manifest.get("routes") or {}, manifest.get("encoders") or {}
        for route, info in routes.items():
            index_dir = directory / "indexes" / route
            try:
                rows = int(np.load(index_dir / "vectors.npy", mmap_mode="r").shape[0])
                ids = len(json.loads((index_dir / "ids.json").read_text()))
                saved = json.loads((index_dir / "manifest.json").read_text())
                if info.get("neighbour_depth", saved.get("neighbour_depth")) is not None:
                    offsets = np.load(index_dir / "neighbours" / "offsets.npy", mmap_mode="r")
                    pairs = [np.load(index_dir / "neighbours" / f"{n}.npy", mmap_mode="r").shape[0]
                             for n in ("rows", "sims")]
                    if len(offsets) != rows + 1 or pairs[0] != pairs[1] or (rows and offsets[-1] != pairs[0]):
                        problems.append(f"index {route}: neighbour table does not fit its {rows} rows")
                    json.loads((index_dir / "neighbours" / "table.json").read_text())
                if (info.get("ann") or saved.get("ann")) and not (index_dir / "ann.faiss").is_file():
                    problems.append(f"index {route}: ann.faiss missing")
            except (OSError, ValueError) as exc:
                problems.append(f"index {route}: files missing or unreadable: {exc}")
                continue
            expected = {"manifest": info.get("count"), "index manifest": saved.get("count"),
                        "counts": counts.get(f"index:{route}", rows), "ids.json": ids}
            wrong = {name: n for name, n in expected.items() if n != rows}
            if wrong:
                problems.append(f"index {route}: vectors.npy holds {rows} rows, but {wrong}")
            if info.get("encoder") and info["encoder"] not in encoders:
                problems.append(f"index {route}: its encoder {info['encoder']} is not in the manifest")
        for encoder in encoders:
            model_dir = directory / "models" / encoder
            if not model_dir.is_dir() or not any(model_dir.iterdir()):
                problems.append(f"encoder {encoder}: model folder models/{encoder} missing or empty")
        on_disk = {p.name for p in (directory / "indexes").iterdir() if p.is_dir()} \
            if (directory / "indexes").is_dir() else set()
        problems += [f"index {name} is on disk but not in the manifest" for name in sorted(on_disk - set(routes))]
        return problems

    def publish(self, staging: Path) -> str:
        version = staging.name.removeprefix(self.STAGING)
        final = self.root / version
        os.replace(staging, final)
        tmp_pointer = self.root / f".ACTIVE.{version}"
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
        """Published versions, oldest first (names sort by time). Staging and rejected
        directories start with a dot and are never among them."""
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def _prune(self, active: str) -> None:
        old = [v for v in self.versions() if v != active]
        for version in old[: max(len(old) - (self.keep - 1), 0)]:
            shutil.rmtree(self.root / version, ignore_errors=True)
