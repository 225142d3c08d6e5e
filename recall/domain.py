"""Plain domain types shared by routes, the merger, jobs and the API."""

from __future__ import annotations

from collections.abc import Callable
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


@dataclass(frozen=True, slots=True)
class Candidate:
    """One article proposed by one route, with what led there."""

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
class FusedCandidate:
    item_id: str
    score: float
    routes: list[Candidate]


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


@dataclass(frozen=True, slots=True)
class EventRecord:
    key: str
    user_id: str
    article_id: str
    kind: str  # impression | click
    ts: datetime
    impression_id: str | None = None
    source: str = "api"


@dataclass(slots=True)
class WindowStats:
    """Clicks and impressions per article over a recent window of event time."""

    clicks: dict[str, float] = field(default_factory=dict)
    impressions: dict[str, float] = field(default_factory=dict)

    def ctr(self, item_id: str, prior_clicks: float = 1.0, prior_impressions: float = 20.0) -> float:
        """Smoothed click-through rate; the prior (1 in 20) keeps rare items from ranking top."""
        c = self.clicks.get(item_id, 0.0)
        return (c + prior_clicks) / (self.impressions.get(item_id, 0.0) + prior_impressions)

    def mean_ctr(self) -> float:
        return (sum(self.clicks.values()) + 1.0) / (sum(self.impressions.values()) + 20.0)


def _no_stats(_hours: float) -> WindowStats:
    return WindowStats()


def _no_fresh(_n: int) -> list[tuple[str, float]]:
    return []


def _no_lists(_kind: str, _clusters: list[tuple[str, str]], _n: int) -> dict:
    return {}


@dataclass(slots=True)
class RequestContext:
    """Everything a route may read for one request, prefetched in one Redis round trip."""

    user_id: str
    now: float  # unix seconds; the replay sets it to the event time
    recent_clicks: list[str] = field(default_factory=list)  # newest first
    user_vectors: dict[str, np.ndarray] = field(default_factory=dict)
    category: str | None = None
    profile: Any = None  # recall.profiles.UserProfile (None: not fetched)
    clusters: dict[str, list[str]] = field(default_factory=dict)  # scheme -> labels, nearest first
    extras: dict[str, Any] = field(default_factory=dict)
    # Global lists shared by all users, read through minute-long in-process caches.
    window_stats: Callable[[float], WindowStats] = _no_stats
    fresh: Callable[[int], list[tuple[str, float]]] = _no_fresh
    # (list kind "cf" | "centre", [(scheme, label)], n) -> each cluster's list, one round trip.
    cluster_lists: Callable[[str, list[tuple[str, str]], int], dict] = _no_lists

    @property
    def is_cold(self) -> bool:
        return not self.recent_clicks
