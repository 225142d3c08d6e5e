"""Request and response bodies of the HTTP API (what /docs shows)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from recall.domain import ArticleRecord

# Ids are VARCHAR(128) in SQL (recall/models.py); event keys VARCHAR(255), of which the API's
# namespace "api:{API key id}:" is ours (key ids are VARCHAR(16)).
ID_MAX_LENGTH = 128
EVENT_KEY_MAX_LENGTH = 255 - len("api::") - 16
# One request is one SQL transaction and one Redis pipeline: keep both short.
MAX_EVENTS_PER_REQUEST = 1000


def clean_text(value: str) -> str:
    """Text every database stores: PostgreSQL refuses NUL characters, and a lone surrogate (JSON
    "\\ud800") has no UTF-8 form."""
    if "\x00" in value:
        raise ValueError("must not contain a NUL character (\\u0000)")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from error
    return value


def naive_utc(ts: datetime) -> datetime:
    """The project stores naive UTC; ISO times without an offset already are. A time at the edge
    of the calendar whose offset would carry it out (0001-01-01T00:00:00+01:00) is refused."""
    if ts.tzinfo is None:
        return ts
    try:
        return ts.astimezone(UTC).replace(tzinfo=None)
    except OverflowError as error:
        raise ValueError("is out of the datetime range once converted to UTC") from error


def text(max_length: int, min_length: int | None = None) -> Any:
    """A string type of bounded length that every database stores (``clean_text``)."""
    return Annotated[str, StringConstraints(min_length=min_length, max_length=max_length), AfterValidator(clean_text)]


Id = text(ID_MAX_LENGTH, min_length=1)
UtcTime = Annotated[datetime, AfterValidator(naive_utc)]


# ---- errors ------------------------------------------------------------------------------------
class ErrorMessage(BaseModel):
    """An error explained in one message: 400, 401, 403, 404, 413, 503, and the 422 of a route
    name the service does not know (other 422s list every invalid field, HTTPValidationError)."""

    detail: str


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
    user_id: Id
    article_id: Id
    kind: Literal["impression", "click"]
    ts: UtcTime | None = Field(
        None, description="ISO-8601 (UTC unless it carries an offset) or unix seconds; default: now")
    impression_id: text(ID_MAX_LENGTH) | None = None
    id: text(EVENT_KEY_MAX_LENGTH, min_length=1) | None = Field(
        None, description="the event's key: a retried event with the same id is stored once")


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
URL_MAX_LENGTH = 2_048
LABEL_MAX_LENGTH = 256
ShortText = Id
URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#]+"  # documents the shape; http_url checks it


def http_url(value: str) -> str:
    """An absolute http(s) URL with a host, without spaces or control characters."""
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError("must be an http(s) URL without spaces or control characters")
    parts = urlsplit(value)  # a malformed host or port raises ValueError: a 422 all the same
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or parts.port == 0:
        raise ValueError("must be an absolute http(s) URL with a host")
    return value


def image_url(value: str) -> str:
    try:
        return http_url(value)
    except ValueError as error:
        raise ValueError(f"{error}: the API never reads a path on the server (only a CLI ingest may "
                         "name image files)") from error


def url_text(check: Any) -> Any:
    """A URL string type: bounded, stored as given, checked by ``check``; documented by its shape."""
    return Annotated[str, StringConstraints(max_length=URL_MAX_LENGTH), AfterValidator(clean_text),
                     AfterValidator(check),
                     WithJsonSchema({"type": "string", "maxLength": URL_MAX_LENGTH, "pattern": URL_PATTERN})]


class TagIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    tag: ShortText
    weight: float = Field(1.0, allow_inf_nan=False)


class EntityIn(BaseModel):
    """A knowledge-graph entity the article names (entity2vec reads ``wikidata_id``)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    wikidata_id: str = Field(max_length=16, pattern=r"^Q[1-9][0-9]{0,14}$", description="e.g. Q42")
    label: text(LABEL_MAX_LENGTH, min_length=1) | None = None
    type: text(ID_MAX_LENGTH, min_length=1) | None = Field(None, description="e.g. P (person)")
    confidence: float = Field(1.0, ge=0.0, le=1.0, allow_inf_nan=False)


class ArticleIn(BaseModel):
    """One article. Unknown fields are refused, so a misspelt field is an error, not lost data."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: ShortText
    title: text(TITLE_MAX_LENGTH) | None = None
    body: text(BODY_MAX_LENGTH) | None = Field(None, validation_alias=AliasChoices("body", "abstract"),
                                               description="body text or abstract (either name)")
    category: ShortText | None = None
    subcategory: ShortText | None = None
    media_id: ShortText | None = None
    tags: list[TagIn] = Field(
        default_factory=list, max_length=MAX_TAGS,
        description='[{"tag", "weight"}], or tag strings strongest first (weights 1.0, 0.9, ...), '
                    'or {"tag": weight}')
    entities: list[EntityIn] = Field(default_factory=list, max_length=MAX_ENTITIES)
    image_ref: url_text(image_url) | None = Field(
        None, validation_alias=AliasChoices("image_ref", "image"),
        description="an http(s) URL of the image (img2vec), fetched once by the server from public "
                    "addresses only; paths on the server are read only for articles a CLI ingest stores")
    url: url_text(http_url) | None = None
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
            entities=tuple(entity.model_dump(exclude_none=True) for entity in self.entities),
            image_ref=self.image_ref or None,
            url=self.url or None,
            published_at=self.published_at,
            expires_at=self.expires_at,
            status=self.status,
            source="api",
            image_origin="http",  # came over HTTP: only ever fetched as a URL, never read as a path
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
    version: str | None = Field(description="the build served")
    checks: dict[str, bool]
    reasons: list[str] = Field(description="what is not ready; empty when ready")
    requested: str | None = Field(None, description="the build ACTIVE names, when another is served")
    load_error: str | None = Field(None, description="why the requested build is not served (the "
                                                     "process serves the newest valid one instead)")
