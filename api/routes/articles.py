"""POST /v1/articles: store articles and make them recallable at once (the new-article fast path).

SQL is the record, as for events: articles are committed there first, and the next nightly
build includes them like any other. Then ``recall.fastpath.publish_articles`` encodes them with
the active build's frozen encoders, adds them to the live index of every vector route and to
the catalog of this process, and to Redis' fresh list. Encoding is CPU-bound, so the handler is
a plain ``def``: FastAPI runs it in its threadpool and the event loop keeps serving meanwhile.

Posting an article again is safe: SQL upserts by id and a route's live delta replaces the vector
an id already has there (``VectorIndex.add``), so nothing is duplicated; an article the build
already holds keeps its build vector until the next build.

Images: ``image_ref`` must be an http(s) URL (api/schemas.py) and the row records that it came
over HTTP (``articles.image_origin = "http"``), so no process ever reads it as a path on the
server. Before SQL holds the articles, the active build's image encoder fetches their URLs into
the image cache under the var directory (public addresses only, encoders/fetch.py): the workers
that take the articles from SQL (catch-up) and the nightly build then find them there, and an
image is fetched once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated

import redis
from fastapi import APIRouter, Body
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from api.deps import ServiceDep, SessionDep
from api.metrics import MetricsDep
from api.schemas import ArticlesIn, ArticlesPublished
from recall import sqlstore
from recall.domain import ArticleRecord
from recall.fastpath import publish_articles
from recall.online import OnlineStore, OnlineStoreError
from recall.routes import ROUTES
from recall.service import Pipeline

log = logging.getLogger(__name__)

router = APIRouter(tags=["articles"])


def with_publish_times(session: Session, records: Sequence[ArticleRecord],
                       received_at: datetime) -> tuple[list[ArticleRecord], set[str]]:
    """One record per id (the last, as SQL keeps it), each with a publish time: the given one,
    else the stored one (so posting again changes nothing), else ``received_at``.

    Also returns the ids stored as hidden: Redis' hidden set must forget them if they come back
    active.
    """
    latest = list({record.id: record for record in records}.values())
    articles = sqlstore.ARTICLES.c
    stored = {row.id: row for row in session.execute(
        select(articles.id, articles.published_at, articles.status)
        .where(articles.id.in_([record.id for record in latest])))}
    timed = [
        record if record.published_at else replace(
            record, published_at=getattr(stored.get(record.id), "published_at", None) or received_at)
        for record in latest
    ]
    return timed, {row.id for row in stored.values() if row.status == "hidden"}


def prefetch_images(pipeline: Pipeline, records: Sequence[ArticleRecord]) -> None:
    """Fetch the records' image URLs into the image cache (each encoder that fetches: img2vec),
    side by side, so that whoever encodes them next, here or in another process, fetches nothing."""
    state = pipeline.state
    names = {ROUTES[route].encoder for route in state.indexes if route in ROUTES and ROUTES[route].encoder}
    for name in sorted(names):
        encoder = state.encoder(name)
        if encoder is not None and hasattr(encoder, "prefetch"):
            encoder.prefetch(records)


def record_image_origin(session: Session, records: Sequence[ArticleRecord]) -> None:
    """Mark the rows' image_ref as come over HTTP (an upsert of a row a CLI ingest stored keeps
    the column otherwise)."""
    articles = sqlstore.ARTICLES.c
    session.execute(update(sqlstore.ARTICLES)
                    .where(articles.id.in_([record.id for record in records]), articles.image_origin != "http")
                    .values(image_origin="http"))


def publish_live(pipeline: Pipeline, online: OnlineStore, records: Sequence[ArticleRecord],
                 was_hidden: set[str]) -> bool:
    """Live indexes, catalog, fresh list and hidden set; False when Redis could not be written
    (the indexes, catalog and this process' snapshot, which come first, are updated all the same)."""
    try:
        publish_articles(pipeline, online, records)
        for record in records:
            # Hidden articles are filtered out of every route, fresh included, in every worker.
            if record.status == "hidden" or record.id in was_hidden:
                pipeline.live.hide(record.id, record.status == "hidden")
                online.set_hidden(record.id, record.status == "hidden")
        return True
    except (redis.RedisError, OnlineStoreError) as exc:
        log.warning("articles indexed but not written to Redis (fresh list, hidden set): %s", exc)
        return False


@router.post("/articles", response_model=ArticlesPublished)
def post_articles(body: Annotated[ArticlesIn, Body(description="one article, or a JSON array of them")],
                  session: SessionDep, service: ServiceDep, metrics: MetricsDep) -> ArticlesPublished:
    received = body if isinstance(body, list) else [body]
    posted = [article.to_record() for article in received]
    prefetch_images(service.pipeline, posted)
    records, was_hidden = with_publish_times(session, posted, datetime.now(UTC).replace(tzinfo=None))
    stored = sqlstore.upsert_articles(session, records)
    record_image_origin(session, records)
    session.commit()
    pipeline = service.pipeline  # one build for the whole batch, even if a new one is swapped in meanwhile
    state = pipeline.state
    online = publish_live(pipeline, service.online, records, was_hidden)
    indexed = {route: sum(record.id in index for record in records)
               for route, index in state.indexes.items()}
    metrics.observe_articles(len(received), indexed)
    log.info("articles published", extra={"fields": {
        "articles": len(records), "stored": stored, "indexed": indexed, "version": state.version}})
    return ArticlesPublished(accepted=len(received), stored=stored, version=state.version,
                             indexed=indexed, online=online)
