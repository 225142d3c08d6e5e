"""User clustering: k-means with the elbow, multi-membership, stable labels, rule clusters.

Pure functions over numpy arrays and plain dicts (no Redis, no SQL), so the nightly job, the
serving process and ``bench/clustering.py`` share them:

* ``fit_kmeans`` / ``choose_k``: faiss k-means; k by the elbow of the inertia curve over a range
  of candidates (the point farthest below the chord from the first to the last candidate).
* ``assign``: a user's nearest centre, plus further centres no more than ``ratio`` times as far
  (a reader of football and of elections belongs to both clusters), up to ``max_memberships``.
* ``match_labels``: a full refresh finds new centres; Hungarian matching on centre distance
  gives each new centre the label of the old one it replaces, so "c7" keeps meaning the same
  group of readers from one refresh to the next. ``label_stability`` measures how far that held.
* ``rule_labels``: dynamic rule clustering; a user's top-K interests joined in order form a
  label; users of labels smaller than ``min_size`` back off to K-1 interests, and so on.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np
from scipy.optimize import linear_sum_assignment

from recall.index import normalise

RULE_SEPARATOR = ">"
OTHER = "other"  # the rule cluster of users with no interest left after backing off


@dataclass(frozen=True, slots=True)
class KMeansFit:
    centres: np.ndarray  # (k, d) float32
    inertia: float  # mean squared distance of a point to its centre


def fit_kmeans(x: np.ndarray, k: int, seed: int = 7, niter: int = 20, nredo: int = 10,
               max_points_per_centroid: int = 256) -> KMeansFit:
    """faiss k-means, best of ``nredo`` starts (one start often merges two groups and splits
    another); it trains on at most ``max_points_per_centroid * k`` sampled points, which keeps a
    million users fast (the mini-batch idea), and reports the inertia over every point."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    # min_points_per_centroid=1: small worlds (tests, a new site) cluster without faiss' warning.
    km = faiss.Kmeans(x.shape[1], k, niter=niter, nredo=nredo, seed=seed, verbose=False, min_points_per_centroid=1,
                      max_points_per_centroid=max_points_per_centroid)
    km.train(x)
    distances, _ = km.index.search(x, 1)
    return KMeansFit(km.centroids.copy(), float(distances.mean()))


def elbow(curve: Sequence[tuple[int, float]]) -> int:
    """The k whose inertia lies farthest below the chord from the first to the last point
    (both axes scaled to [0, 1]); with fewer than three points, the largest k."""
    if len(curve) < 3:
        return curve[-1][0]
    ks = np.array([k for k, _ in curve], float)
    inertia = np.array([i for _, i in curve], float)
    xs = (ks - ks[0]) / max(ks[-1] - ks[0], 1e-12)
    span = inertia[0] - inertia[-1]
    ys = (inertia - inertia[-1]) / span if span > 1e-12 else np.zeros_like(inertia)
    # The chord runs from (0, 1) to (1, 0): a point's distance below it is 1 - x - y (over sqrt 2).
    return int(ks[int(np.argmax(1.0 - xs - ys))])


def choose_k(x: np.ndarray, candidates: Sequence[int], seed: int = 7, sample: int = 20_000,
             nredo: int = 2) -> tuple[int, list[tuple[int, float]]]:
    """k by the elbow over ``candidates`` (each capped at n/5, at least 2), fitted on a sample
    with fewer starts than the final fit: the curve needs its shape, not each point's best."""
    n = len(x)
    ks = sorted({min(max(int(k), 2), max(n // 5, 2)) for k in candidates})
    if n > sample:
        x = x[np.random.default_rng(seed).choice(n, sample, replace=False)]
    curve = [(k, fit_kmeans(x, k, seed=seed, nredo=nredo).inertia) for k in ks]
    return elbow(curve), curve


def assign(x: np.ndarray, centres: np.ndarray, max_memberships: int = 2,
           ratio: float = 1.15) -> list[list[int]]:
    """Per row of ``x``: indices of its clusters, nearest first (see the module docstring)."""
    index = faiss.IndexFlatL2(centres.shape[1])
    index.add(np.ascontiguousarray(centres, dtype=np.float32))
    k = min(max_memberships, len(centres))
    distances, ids = index.search(np.ascontiguousarray(x, dtype=np.float32), k)
    # Distances are squared: compare them with the squared ratio.
    limit = distances[:, :1] * ratio * ratio + 1e-9
    keep = distances <= limit
    return [ids[row, keep[row]].tolist() for row in range(len(x))]


def match_labels(old_centres: np.ndarray | None, old_labels: Sequence[str],
                 new_centres: np.ndarray) -> list[str]:
    """A label per new centre: the matched old centre's label, or a new one where there is none."""
    taken = set(old_labels)
    labels: list[str | None] = [None] * len(new_centres)
    if old_centres is not None and len(old_centres) and old_centres.shape[1] == new_centres.shape[1]:
        cost = ((new_centres[:, None, :] - old_centres[None, :, :]) ** 2).sum(axis=2)
        for new, old in zip(*linear_sum_assignment(cost)):
            labels[new] = old_labels[old]
    fresh = (f"c{n}" for n in range(len(taken) + len(new_centres) + 1) if f"c{n}" not in taken)
    return [label if label is not None else next(fresh) for label in labels]


def label_stability(old: Mapping[str, str], new: Mapping[str, str]) -> float | None:
    """Share of users in both assignments whose (primary) label did not change."""
    common = old.keys() & new.keys()
    if not common:
        return None
    return sum(old[u] == new[u] for u in common) / len(common)


def rule_labels(interests: Mapping[str, Sequence[str]], top_k: int, min_size: int) -> dict[str, str]:
    """user -> label, backing off from K interests towards fewer until every label but
    ``OTHER`` has at least ``min_size`` users (see the module docstring)."""
    depth = {user: min(top_k, len(items)) for user, items in interests.items()}

    def label(user: str) -> str:
        d = depth[user]
        return RULE_SEPARATOR.join(interests[user][:d]) if d else OTHER

    for _ in range(top_k):
        sizes = Counter(label(u) for u in interests)
        small = [u for u in interests if depth[u] and sizes[label(u)] < min_size]
        if not small:
            break
        for user in small:
            depth[user] -= 1
    return {user: label(user) for user in interests}


def rule_label_of(interests: Sequence[str], known: set[str], top_k: int) -> str:
    """Online assignment to the built rule clusters: the longest known prefix of the interests."""
    for d in range(min(top_k, len(interests)), 0, -1):
        candidate = RULE_SEPARATOR.join(interests[:d])
        if candidate in known:
            return candidate
    return OTHER


def size_distribution(sizes: Sequence[int]) -> dict[str, float]:
    """What the job records about cluster sizes."""
    if not sizes:
        return {"clusters": 0}
    s = np.sort(np.asarray(sizes))
    return {"clusters": int(len(s)), "min": int(s[0]), "median": float(np.median(s)),
            "max": int(s[-1]), "p90": float(np.quantile(s, 0.9)),
            "largest_share": float(s[-1] / s.sum())}


@dataclass
class ClusterModel:
    """One clustering scheme as a build holds it: what serving needs to assign users online and
    to run the cluster routes. ``group_vectors`` (one per label, in tag2vec's item space) are the
    user2vec vectors of each cluster's merged member profiles; ``item_route`` is the index whose
    space the centres live in (their nightly candidates come from there)."""

    scheme: str
    kind: str  # "kmeans" | "rule"
    vector_kind: str | None  # the user vector kind clustered (kmeans only)
    labels: list[str]
    item_route: str  # whose index the centres and group vectors search
    centres: np.ndarray | None = None  # (k, d) in the user vector space (kmeans only)
    group_vectors: np.ndarray | None = None  # (k, item dim)
    max_memberships: int = 2
    ratio: float = 1.15
    top_k: int = 2
    meta: dict = field(default_factory=dict)
    # label -> the fresh articles nearest its centre as (id, similarity), best first (nightly);
    # ``centre_rows`` holds the same as (catalog rows, scores) once bound to a serving catalog.
    centre_lists: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    centre_rows: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)
    _rows: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rows = {label: row for row, label in enumerate(self.labels)}

    def assign(self, vectors: np.ndarray) -> list[list[str]]:
        """Labels of each row's clusters, nearest first (kmeans schemes)."""
        rows = assign(normalise(vectors), self.centres, self.max_memberships, self.ratio)
        return [[self.labels[i] for i in row] for row in rows]

    def assign_rule(self, interests: Sequence[str]) -> list[str]:
        label = rule_label_of(interests, set(self.labels), self.top_k)
        return [] if label == OTHER else [label]

    def group_vector(self, label: str) -> np.ndarray | None:
        if self.group_vectors is None or label not in self._rows:
            return None
        return self.group_vectors[self._rows[label]]

    def bind(self, catalog) -> None:
        self.centre_rows = {label: (catalog.ensure([i for i, _ in items]),
                                    np.array([s for _, s in items], np.float32))
                            for label, items in self.centre_lists.items()}

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {name: value for name, value in
                  (("centres", self.centres), ("group_vectors", self.group_vectors)) if value is not None}
        if self.centre_lists:  # (k, longest) arrays, padded with "" and NaN
            width = max(map(len, self.centre_lists.values()))
            ids = np.full((len(self.labels), width), "", dtype=object)
            scores = np.full((len(self.labels), width), np.nan, np.float32)
            for label, items in self.centre_lists.items():
                ids[self._rows[label], : len(items)] = [i for i, _ in items]
                scores[self._rows[label], : len(items)] = [s for _, s in items]
            arrays.update(centre_ids=ids.astype(str), centre_scores=scores)
        np.savez(directory / f"{self.scheme}.npz", **arrays)
        (directory / f"{self.scheme}.json").write_text(json.dumps({
            "scheme": self.scheme, "kind": self.kind, "vector_kind": self.vector_kind,
            "labels": self.labels, "item_route": self.item_route,
            "max_memberships": self.max_memberships, "ratio": self.ratio, "top_k": self.top_k,
            "meta": self.meta,
        }, indent=1, default=str))

    @classmethod
    def load(cls, directory: Path, scheme: str) -> ClusterModel:
        spec = json.loads((directory / f"{scheme}.json").read_text())
        with np.load(directory / f"{scheme}.npz") as arrays:
            centre_lists = {}
            if "centre_ids" in arrays:
                for label, ids, scores in zip(spec["labels"], arrays["centre_ids"], arrays["centre_scores"]):
                    centre_lists[label] = [(i, float(s)) for i, s in zip(ids.tolist(), scores.tolist()) if i]
            return cls(**spec, centres=arrays.get("centres"), group_vectors=arrays.get("group_vectors"),
                       centre_lists=centre_lists)
