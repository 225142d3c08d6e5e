"""Request and response bodies of the HTTP API (what /docs shows)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from recall.domain import ArticleRecord

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


class RemovedCandidate(BaseModel):
    item_id: str
    route: str
    reason: str = Field(description="the filter that removed it: unpublished, expired, hidden, category, seen")


class RecallResponse(BaseModel):
    user_id: str
    version: str | None = Field(description="the build that served the request; null without one")
    cold: bool = Field(description="true when the user has no recent clicks (fallback routes serve)")
    n: int = Field(description="the number of candidates asked for, after capping at the server's max_n")
    degraded: bool = Field(False, description="true when Redis did not answer: the user's own state "
                                              "(recent clicks, seen, clusters) is missing from this answer")
    candidates: list[RecallCandidate]
    routes: dict[str, RouteStats] | None = Field(None, description="per-route stats (explain=true)")
    dropped: dict[str, int] | None = Field(None, description="candidates dropped, by reason (explain=true)")
    removed: list[RemovedCandidate] | None = Field(
        None, description="each candidate the filters removed, with the route that proposed it (explain=true)")


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


# ---- articles (the fast path) -------------------------------------------------------------------
# Each article is encoded by every content encoder while the client waits: keep a batch small.
MAX_ARTICLES_PER_REQUEST = 100
MAX_TAGS = MAX_ENTITIES = 100
TITLE_MAX_LENGTH = 1_000
BODY_MAX_LENGTH = 100_000


def naive_utc(ts: datetime) -> datetime:
    """The project stores naive UTC; ISO times without an offset already are."""
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts


UtcTime = Annotated[datetime, AfterValidator(naive_utc)]
ShortText = Annotated[str, Field(min_length=1, max_length=ID_MAX_LENGTH)]


class TagIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    tag: ShortText
    weight: float = Field(1.0, allow_inf_nan=False)


class ArticleIn(BaseModel):
    """One article. Unknown fields are refused, so a misspelt field is an error, not lost data."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: ShortText
    title: str | None = Field(None, max_length=TITLE_MAX_LENGTH)
    body: str | None = Field(None, max_length=BODY_MAX_LENGTH, validation_alias=AliasChoices("body", "abstract"),
                             description="body text or abstract (either name)")
    category: ShortText | None = None
    subcategory: ShortText | None = None
    media_id: ShortText | None = None
    tags: list[TagIn] = Field(
        default_factory=list, max_length=MAX_TAGS,
        description='[{"tag", "weight"}], or tag strings strongest first (weights 1.0, 0.9, ...), '
                    'or {"tag": weight}')
    entities: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_ENTITIES)
    image_ref: str | None = Field(None, validation_alias=AliasChoices("image_ref", "image"),
                                  description="a path on the server or an http(s) URL of the image (img2vec)")
    url: str | None = None
    published_at: UtcTime | None = Field(
        None, description="ISO-8601 or unix seconds; default: when first received (a re-POST keeps it)")
    expires_at: UtcTime | None = Field(None, description="when it stops being recalled; default: never")
    status: Literal["active", "hidden"] = "active"

    @field_validator("tags", mode="before")
    @classmethod
    def tags_in_any_documented_shape(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return [{"tag": tag, "weight": weight} for tag, weight in value.items()]
        if isinstance(value, list) and value and all(isinstance(tag, str) for tag in value):
            # Given strongest first without weights: the ingest format's 1.0, 0.9, ... (floor 0.1).
            return [{"tag": tag, "weight": round(max(1.0 - 0.1 * rank, 0.1), 2)}
                    for rank, tag in enumerate(value)]
        return value

    @model_validator(mode="after")
    def expires_after_publishing(self) -> ArticleIn:
        if self.published_at and self.expires_at and self.expires_at <= self.published_at:
            raise ValueError("expires_at must be later than published_at")
        return self

    def to_record(self) -> ArticleRecord:
        weights: dict[str, float] = {}
        for tag in self.tags:  # a tag given twice keeps its strongest weight
            weights[tag.tag] = max(weights.get(tag.tag, tag.weight), tag.weight)
        return ArticleRecord(
            id=self.id,
            title=self.title or None,
            body=self.body or None,
            category=self.category,
            subcategory=self.subcategory,
            media_id=self.media_id,
            tags=tuple(sorted(weights.items(), key=lambda tw: -tw[1])),
            entities=tuple(self.entities),
            image_ref=self.image_ref or None,
            url=self.url or None,
            published_at=self.published_at,
            expires_at=self.expires_at,
            status=self.status,
            source="api",
        )


def _one_or_many(value: Any) -> str:
    return "batch" if isinstance(value, list) else "article"


# A JSON object is one article, a JSON array a batch; errors point into the shape that was sent
# (loc ["body", "article", "title"] or ["body", "batch", 3, "title"]).
ArticlesIn = Annotated[
    Annotated[ArticleIn, Tag("article")]
    | Annotated[list[ArticleIn], Tag("batch"), Field(min_length=1, max_length=MAX_ARTICLES_PER_REQUEST)],
    Discriminator(_one_or_many),
]


class ArticlesPublished(BaseModel):
    accepted: int = Field(description="articles in the request")
    stored: int = Field(description="articles new or changed in SQL (posting the same article again stores none)")
    version: str | None = Field(description="the build whose encoders encoded them; null without a build")
    indexed: dict[str, int] = Field(
        description="per vector route, how many of the articles its live index now holds (an article "
                    "a route cannot encode, e.g. one without an image for img2vec, is not counted)")
    online: bool = Field(description="whether Redis took them (fresh list, hidden set); false while it is down")


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
