"""Plain domain types shared by routes, the merger, jobs and the API."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

# Events whose real time is unknown (MIND's click histories, backfills): they shape a user's
# profile and seen set but are not live signals, so they never count as "hot".
HISTORY_SOURCE = "history"


def tag_token(tag: str) -> str:
    """One whitespace-free, lower-case token per tag ("New York City" -> "new_york_city"): the
    form tags take in tag2vec's vocabulary and in user profiles."""
    return "_".join(tag.lower().split())


def to_unix(dt: datetime | None) -> float | None:
    """Unix seconds of a datetime; naive datetimes are UTC throughout the project."""
    if dt is None:
        return None
    return (dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt).timestamp()


@dataclass(slots=True)
class Candidate:
    """One article proposed by one route, with what led there (made only for what is shown)."""

    item_id: str
    score: float
    route: str
    seed: str | None = None  # the clicked item, tag, cluster or vector behind it
    raw_similarity: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "seed": self.seed,
            "raw_similarity": self.raw_similarity,
            "score": self.score,
        }


@dataclass(slots=True)
class Provenance:
    """One route behind a fused candidate; its fields are the response's, in order (orjson
    serialises these dataclasses directly)."""

    route: str
    seed: str | None
    raw_similarity: float | None
    score: float


@dataclass(slots=True)
class FusedCandidate:
    item_id: str
    score: float
    routes: list[Provenance]


@dataclass(slots=True)
class Dropped:
    """A candidate a filter removed, and why (seen, expired, hidden, category, duplicate)."""

    candidate: Candidate
    reason: str


@dataclass(frozen=True, slots=True)
class ArticleRecord:
    """An article as ingest produces it, before it becomes a SQL row."""

    id: str
    title: str | None = None
    body: str | None = None
    category: str | None = None
    subcategory: str | None = None
    media_id: str | None = None
    tags: tuple[tuple[str, float], ...] = ()
    entities: tuple[dict[str, Any], ...] = ()
    image_ref: str | None = None
    url: str | None = None
    published_at: datetime | None = None
    expires_at: datetime | None = None
    status: str = "active"
    source: str = "jsonl"
    id_only: bool = False
    # Where image_ref came from (the articles.image_origin column): "http" (the API: only ever
    # fetched as an http(s) URL, never read as a path on this server) or "local" (a CLI ingest by
    # an operator: a path may be read). None: decided by ``source`` (``image_source``).
    image_origin: str | None = None

    @property
    def ranked_tags(self) -> list[tuple[str, float]]:
        """The tags strongest first (ties in their given order), blank ones included."""
        return sorted(self.tags, key=lambda tw: -float(tw[1]))

    @property
    def image_source(self) -> str:
        """"local" or "http": the given origin, else "local" only for what ``recall ingest`` stores
        (its sources: jsonl, mind, tnews, synthetic) and "http" for anything else (the API's "api")."""
        if self.image_origin is not None:
            return "local" if self.image_origin == "local" else "http"
        return "local" if self.source in ("jsonl", "mind", "tnews", "synthetic") else "http"


@dataclass(frozen=True, slots=True)
class EventRecord:
    key: str
    user_id: str
    article_id: str
    kind: str  # impression | click
    ts: datetime
    impression_id: str | None = None
    source: str = "api"


class RouteTimeout(RuntimeError):
    """A route ran past its time budget and was stopped (``Deadline.check``)."""


@dataclass(frozen=True, slots=True)
class Deadline:
    """When a route must have answered, on ``time.perf_counter``'s clock. Routes call
    ``check`` between their steps; the service also drops an answer that came too late."""

    at: float = float("inf")

    @classmethod
    def after(cls, ms: float) -> Deadline:
        return cls(time.perf_counter() + ms / 1000)

    def check(self) -> None:
        if time.perf_counter() > self.at:
            raise RouteTimeout("route ran past its time budget")


@dataclass(slots=True)
class Candidates:
    """One route's candidates as columns, best first: catalog rows, scores, and what led there.

    ``seeds`` index ``seed_labels`` (the clicked article, tag group, cluster or list behind a
    candidate; -1: none); ``raw`` is the raw similarity (NaN where the route has none).
    Objects (``Candidate``) are made only for what a response returns.
    """

    rows: np.ndarray  # int32 catalog rows, unique
    scores: np.ndarray  # float32
    seeds: np.ndarray  # int32 into seed_labels, -1: none
    raw: np.ndarray  # float32, NaN: none
    seed_labels: Sequence[str] = ()

    @classmethod
    def empty(cls) -> Candidates:
        return cls(np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros(0, np.int32),
                   np.zeros(0, np.float32))

    @classmethod
    def of(cls, rows, scores, seeds=None, raw=None, seed_labels: Sequence[str] = ()) -> Candidates:
        rows = np.asarray(rows, np.int32)
        n = len(rows)
        return cls(rows, np.asarray(scores, np.float32),
                   np.full(n, -1, np.int32) if seeds is None else np.asarray(seeds, np.int32),
                   np.full(n, np.nan, np.float32) if raw is None else np.asarray(raw, np.float32),
                   seed_labels)

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, index: np.ndarray) -> Candidates:
        """The candidates at ``index`` (positions or a boolean mask), labels shared."""
        return Candidates(self.rows[index], self.scores[index], self.seeds[index], self.raw[index],
                          self.seed_labels)

    def with_scores(self, scores: np.ndarray) -> Candidates:
        """The same candidates rescored, re-sorted best first (stable: ties keep their order)."""
        order = np.argsort(-scores, kind="stable")
        return Candidates(self.rows[order], scores[order].astype(np.float32), self.seeds[order],
                          self.raw[order], self.seed_labels)

    def candidate(self, i: int, route: str, ids: Sequence[str]) -> Candidate:
        seed = int(self.seeds[i])
        raw = float(self.raw[i])
        return Candidate(ids[int(self.rows[i])], float(self.scores[i]), route,
                         self.seed_labels[seed] if seed >= 0 else None, None if raw != raw else raw)

    def to_list(self, route: str, ids: Sequence[str], limit: int | None = None) -> list[Candidate]:
        """Provenance objects for the first ``limit`` (admin pages, tests)."""
        return [self.candidate(i, route, ids) for i in range(min(len(self), limit or len(self)))]


def top_n(scores: np.ndarray, n: int) -> np.ndarray:
    """Positions of the ``n`` highest scores, best first (``argpartition``, then sort the n)."""
    if n <= 0 or not len(scores):
        return np.zeros(0, np.int64)
    if n < len(scores):
        part = np.argpartition(-scores, n - 1)[:n]
        return part[np.argsort(-scores[part], kind="stable")]
    return np.argsort(-scores, kind="stable")


@dataclass(frozen=True, slots=True)
class ContextNeeds:
    """What a route reads from the user's Redis state; a request fetches the union of its
    routes' needs (``OnlineStore.fetch_context``). Recent clicks and the seen set always come."""

    vector_kinds: tuple[str, ...] = ()
    profile: bool = False
    clusters: bool = False
    list_kinds: tuple[str, ...] = ()  # cluster lists: "cf", "centre"
    list_depth: int = 0
    # Item CF: the co-click lists of the user's newest ``co_click_seeds`` clicks, top
    # ``co_click_depth`` of each (read with the cluster lists, in the second round trip).
    co_click_seeds: int = 0
    co_click_depth: int = 0

    def __or__(self, other: ContextNeeds) -> ContextNeeds:
        return ContextNeeds(tuple(dict.fromkeys(self.vector_kinds + other.vector_kinds)),
                            self.profile or other.profile, self.clusters or other.clusters,
                            tuple(dict.fromkeys(self.list_kinds + other.list_kinds)),
                            max(self.list_depth, other.list_depth),
                            max(self.co_click_seeds, other.co_click_seeds),
                            max(self.co_click_depth, other.co_click_depth))


@dataclass(slots=True)
class RequestContext:
    """Everything a route may read for one request: the user's Redis state (prefetched in at
    most two pipelined round trips), the live snapshot (hot, fresh, hidden) and the deadline.

    Routes read it and do no I/O. ``cluster_lists`` maps (list kind, scheme, label) to that
    cluster's list as (catalog rows, scores), best first; ``co_clicks`` does the same for a
    recent click's co-clicked articles.
    """

    user_id: str
    now: float  # unix seconds; the replay sets it to the event time
    recent_clicks: list[str] = field(default_factory=list)  # newest first
    click_times: list[float] = field(default_factory=list)
    user_vectors: dict[str, np.ndarray] = field(default_factory=dict)
    category: str | None = None
    profile: Any = None  # recall.profiles.UserProfile (None: not fetched)
    clusters: dict[str, list[str]] = field(default_factory=dict)  # scheme -> labels, nearest first
    seen_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    cluster_lists: dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    # Item CF: a recent click -> its co-clicked articles (catalog rows, co-click counts decayed
    # to ``now``), strongest first.
    co_clicks: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    live: Any = None  # recall.live.LiveSnapshot
    deadline: Deadline = field(default_factory=Deadline)
    degraded: bool = False  # Redis did not answer, or lost its state: the user's may be missing

    @property
    def is_cold(self) -> bool:
        return not self.recent_clicks
