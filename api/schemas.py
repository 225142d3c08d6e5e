"""Request and response bodies of the HTTP API (what /docs shows)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

# Ids are VARCHAR(128) in SQL (recall/models.py); event keys VARCHAR(255), of which "api:" is ours.
ID_MAX_LENGTH = 128
EVENT_KEY_MAX_LENGTH = 250
# One request is one SQL transaction and one Redis pipeline: keep both short.
MAX_EVENTS_PER_REQUEST = 1000


# ---- recall --------------------------------------------------------------------------------
class Provenance(BaseModel):
    """One route that proposed the candidate, and what led it there."""

    route: str
    seed: str | None = Field(description="the clicked item, tag, cluster or list behind it")
    raw_similarity: float | None
    score: float = Field(description="the route's own score, before fusion")


class RecallCandidate(BaseModel):
    item_id: str
    score: float = Field(description="fused score; candidates are sorted by it, best first")
    routes: list[Provenance]


class RouteStats(BaseModel):
    count: int = Field(description="candidates the route returned")
    kept: int = Field(description="of those, what passed the filters")
    ms: float
    error: str | None = Field(description="why the route was skipped, when it failed")


class RecallResponse(BaseModel):
    user_id: str
    version: str | None = Field(description="the build that served the request; null without one")
    cold: bool = Field(description="true when the user has no recent clicks (fallback routes serve)")
    n: int = Field(description="the number of candidates asked for, after capping at the server's max_n")
    candidates: list[RecallCandidate]
    routes: dict[str, RouteStats] | None = Field(None, description="per-route stats (explain=true)")
    dropped: dict[str, int] | None = Field(None, description="candidates dropped, by reason (explain=true)")


# ---- similar items ---------------------------------------------------------------------------
class Neighbour(BaseModel):
    item_id: str
    score: float = Field(description="cosine similarity to the source article")


class SimilarResponse(BaseModel):
    item_id: str
    route: str
    version: str | None
    n: int = Field(description="the number of neighbours asked for, after capping at similar_max_n")
    neighbours: list[Neighbour]


# ---- events ----------------------------------------------------------------------------------
class EventIn(BaseModel):
    user_id: str = Field(min_length=1, max_length=ID_MAX_LENGTH)
    article_id: str = Field(min_length=1, max_length=ID_MAX_LENGTH)
    kind: Literal["impression", "click"]
    ts: datetime | None = Field(
        None, description="ISO-8601 (UTC unless it carries an offset) or unix seconds; default: now")
    impression_id: str | None = Field(None, max_length=ID_MAX_LENGTH)
    id: str | None = Field(None, min_length=1, max_length=EVENT_KEY_MAX_LENGTH,
                           description="the event's key: a retried event with the same id is stored once")


class EventBatch(BaseModel):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)


class EventsAccepted(BaseModel):
    accepted: int = Field(description="events in the request")
    stored: int = Field(description="events new to SQL (a retried event is stored once)")
    online: bool = Field(description="whether online state (Redis) took them; false while it is down")


# ---- routes ------------------------------------------------------------------------------------
class IndexInfo(BaseModel):
    version: str | None = Field(description="the build the index belongs to")
    encoder_version: str | None
    count: int
    dim: int
    built_at: str | None


class RouteInfo(BaseModel):
    name: str
    kind: str
    description: str
    enabled: bool
    weight: float
    quota: int
    params: dict[str, Any]
    available: bool = Field(description="whether the active build can serve this route")
    index: IndexInfo | None = Field(description="vector routes: the index serving them")


class RoutesResponse(BaseModel):
    version: str | None
    routes: list[RouteInfo]


# ---- health ------------------------------------------------------------------------------------
class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    ready: bool
    version: str | None
    checks: dict[str, bool]
    reasons: list[str] = Field(description="what is not ready; empty when ready")
