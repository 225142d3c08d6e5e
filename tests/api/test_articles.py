"""POST /v1/articles: a new article is stored in SQL and recallable at once, without a build.

The fast path grows the app's live indexes, so these tests run an app over a world of their own
(tests/api/conftest.py's session app serves tests that count its index). Every test posts
articles and users of its own ids; the world and app are shared by the module. The image and
entity tests have a second world whose build also serves img2vec and entity2vec, and image
servers of their own on 127.0.0.1 (which that world allows) and 127.0.0.2 (which it does not).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.app import create_app
from api.schemas import MAX_ARTICLES_PER_REQUEST
from encoders.img2vec import build_random_resnet
from encoders.tag2vec import top_tags
from jobs.ingest.jsonl import ingest_jsonl_articles
from jobs.nightly import run_nightly
from recall import sqlstore
from recall.domain import ArticleRecord
from recall.models import Article
from recall.online import OnlineStore
from recall.serving import ServingState
from recall.settings import Settings
from tests.api.conftest import REDIS_URL, BuiltWorld, key_headers, unused_redis_url, world_of_its_own


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[BuiltWorld]:
    # A world of its own: posts grow its live index, which the shared world's tests count.
    with world_of_its_own(tmp_path_factory.mktemp("fastpath-world"), articles=300, users=60, days=3,
                          similar_max_n=15) as built:
        yield built


@pytest.fixture(scope="module")
def api(world: BuiltWorld) -> Iterator[TestClient]:
    with TestClient(create_app(world.settings), headers=key_headers(world.engine)) as client:
        yield client


@pytest.fixture(scope="module")
def existing(world: BuiltWorld) -> ArticleRecord:
    """A built article, live for the next day (``/similar`` leaves expired ones out), whose top-3
    tags no other article shares: a copy of its tags has it as its one nearest tag2vec neighbour
    (cosine 1), which no tie with other articles can push away."""
    tag_sets = Counter(frozenset(top_tags(a)) for a in world.world.articles)
    tomorrow = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=1)
    return next(a for a in world.world.articles
                if len(top_tags(a)) == 3 and tag_sets[frozenset(top_tags(a))] == 1
                and (a.expires_at is None or a.expires_at > tomorrow) and a.published_at < tomorrow - timedelta(days=1))


def related(to: ArticleRecord, **fields: Any) -> dict[str, Any]:
    """A new article on the same subject as ``to``: its tags, its category, a title of its words."""
    return {"id": f"new-{uuid.uuid4().hex[:8]}", "title": f"Breaking: {to.title}", "body": to.body,
            "category": to.category, "subcategory": to.subcategory,
            "tags": [{"tag": tag, "weight": weight} for tag, weight in to.tags], **fields}


def neighbours(api: TestClient, item_id: str, route: str = "tag2vec") -> list[str]:
    response = api.get(f"/v1/items/{item_id}/similar", params={"route": route})
    assert response.status_code == 200, response.text
    return [nb["item_id"] for nb in response.json()["neighbours"]]


def recalled(api: TestClient, user: str, routes: str) -> dict[str, Any]:
    response = api.get(f"/v1/recall/{user}", params={"routes": routes, "explain": True, "n": 60})
    assert response.status_code == 200, response.text
    return response.json()


def click(api: TestClient, user: str, article_id: str) -> None:
    response = api.post("/v1/events", json={"events": [{"user_id": user, "article_id": article_id,
                                                        "kind": "click"}]})
    assert response.status_code == 200 and response.json()["online"], response.text


def stored_row(world: BuiltWorld, article_id: str) -> Article | None:
    with Session(world.engine) as session:
        return session.scalar(select(Article).where(Article.id == article_id))


def test_a_new_article_is_a_neighbour_at_once_and_stored_in_sql(api, world, existing):
    new = related(existing)
    assert new["id"] not in neighbours(api, existing.id)
    response = api.post("/v1/articles", json=new)
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 1, "stored": 1, "version": world.build.version,
                               "indexed": {"tag2vec": 1}, "online": True}
    assert new["id"] in neighbours(api, existing.id)
    assert existing.id in neighbours(api, new["id"])
    row = stored_row(world, new["id"])
    assert row is not None and row.source == "api" and row.title == new["title"]
    assert row.tags == [[tag, weight] for tag, weight in existing.tags]
    assert row.published_at is not None  # none given: the time it was received


def test_a_new_article_is_recalled_for_readers_of_its_subject_and_in_fresh(api, existing):
    reader, newcomer = f"reader-{uuid.uuid4().hex[:6]}", f"newcomer-{uuid.uuid4().hex[:6]}"
    click(api, reader, existing.id)
    new = related(existing)
    assert api.post("/v1/articles", json=new).status_code == 200
    tag2vec = {c["item_id"]: c for c in recalled(api, reader, "tag2vec")["candidates"]}
    assert tag2vec[new["id"]]["routes"][0]["seed"] == existing.id
    fresh = [c["item_id"] for c in recalled(api, newcomer, "fresh")["candidates"]]
    assert fresh[0] == new["id"]  # the newest article of all


def test_posting_again_stores_and_indexes_nothing_new(api, world, existing):
    new = related(existing)
    first = api.post("/v1/articles", json=new).json()
    size = api.get("/v1/routes").json()
    published = stored_row(world, new["id"]).published_at
    again = api.post("/v1/articles", json=new).json()
    assert (first["stored"], again["stored"]) == (1, 0)
    assert again["indexed"] == first["indexed"] == {"tag2vec": 1}
    assert api.get("/v1/routes").json() == size  # index counts included
    assert neighbours(api, existing.id).count(new["id"]) == 1
    assert stored_row(world, new["id"]).published_at == published


def test_a_batch_is_stored_once_per_id_the_last_version_winning(api, world, existing):
    first, second = related(existing), related(existing)
    changed = {**first, "title": "Corrected title"}
    response = api.post("/v1/articles", json=[first, second, changed])
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 3 and response.json()["indexed"] == {"tag2vec": 2}
    assert stored_row(world, first["id"]).title == "Corrected title"
    around = neighbours(api, existing.id)
    assert around.count(first["id"]) == 1 and second["id"] in around


def test_other_documented_shapes_of_tags_and_fields(api, world, existing):
    tags = [tag for tag, _ in existing.tags]
    as_strings = related(existing, tags=tags, abstract="An abstract.", image="https://example.org/n1.jpg")
    del as_strings["body"]
    as_object = related(existing, tags={tag: weight for tag, weight in existing.tags})
    for article in (as_strings, as_object):
        response = api.post("/v1/articles", json=article)
        assert response.status_code == 200, response.text
        assert article["id"] in neighbours(api, existing.id)
    row = stored_row(world, as_strings["id"])
    assert row.body == "An abstract." and row.image_ref == "https://example.org/n1.jpg"
    assert row.image_origin == "http"
    assert row.tags == [[tag, round(1.0 - 0.1 * rank, 2)] for rank, tag in enumerate(tags)]


def test_hidden_and_expired_articles_are_not_recalled(api, existing):
    reader, newcomer = f"reader-{uuid.uuid4().hex[:6]}", f"newcomer-{uuid.uuid4().hex[:6]}"
    click(api, reader, existing.id)
    now = datetime.now(UTC)
    hidden = related(existing, status="hidden")
    expired = related(existing, published_at=(now - timedelta(hours=3)).isoformat(),
                      expires_at=(now - timedelta(hours=1)).isoformat())
    response = api.post("/v1/articles", json=[hidden, expired])
    assert response.status_code == 200 and response.json()["stored"] == 2

    body = recalled(api, reader, "tag2vec,fresh")
    ids = {c["item_id"] for c in body["candidates"]}
    assert hidden["id"] not in ids and expired["id"] not in ids
    assert body["dropped"]["hidden"] >= 1 and body["dropped"]["expired"] >= 1
    assert hidden["id"] not in {c["item_id"] for c in recalled(api, newcomer, "fresh")["candidates"]}

    # Shown again (posted active): the hidden flag is gone from every worker's view (Redis).
    assert api.post("/v1/articles", json={**hidden, "status": "active"}).json()["stored"] == 1
    assert hidden["id"] in {c["item_id"] for c in recalled(api, reader, "tag2vec")["candidates"]}


BAD_ARTICLES = [
    # (body, where the error is, words the message must contain)
    ({"title": "no id"}, ["body", "article", "id"], "Field required"),
    ({"id": "x" * 129}, ["body", "article", "id"], "at most 128 characters"),
    ({"id": "a", "titel": "typo"}, ["body", "article", "titel"], "Extra inputs are not permitted"),
    ({"id": "a", "tags": [{"tag": "x", "weight": "heavy"}]}, ["body", "article", "tags", 0, "weight"],
     "valid number"),
    ({"id": "a", "tags": 7}, ["body", "article", "tags"], "valid list"),
    ({"id": "a", "status": "deleted"}, ["body", "article", "status"], "'active' or 'hidden'"),
    ({"id": "a", "published_at": "yesterday"}, ["body", "article", "published_at"], "datetime"),
    ({"id": "a", "published_at": "2026-11-23T10:00:00Z", "expires_at": "2026-11-23T09:00:00Z"},
     ["body", "article"], "expires_at must be later than published_at"),
    ([], ["body", "batch"], "at least 1 item"),
    ([{"id": f"a{i}"} for i in range(MAX_ARTICLES_PER_REQUEST + 1)], ["body", "batch"],
     f"at most {MAX_ARTICLES_PER_REQUEST} items"),
    ([{"id": "a"}, {"id": 5}], ["body", "batch", 1, "id"], "valid string"),
    ("an article", ["body", "article"], "valid dictionary"),
    # image_ref and url: http(s) URLs only; the API never names a file on the server
    ({"id": "a", "image_ref": "/etc/passwd"}, ["body", "article", "image_ref"], "http(s) URL"),
    ({"id": "a", "image": "file:///etc/passwd"}, ["body", "article", "image"], "never reads a path"),
    ({"id": "a", "image_ref": "ftp://example.org/a.jpg"}, ["body", "article", "image_ref"], "http(s) URL"),
    ({"id": "a", "image_ref": "http:///a.jpg"}, ["body", "article", "image_ref"], "with a host"),
    ({"id": "a", "image_ref": "https://example.org/" + "a" * 2100}, ["body", "article", "image_ref"], "2048"),
    ({"id": "a", "url": "javascript:alert(1)"}, ["body", "article", "url"], "http(s) URL"),
    ({"id": "a", "url": "https://example.org/a b"}, ["body", "article", "url"], "without spaces"),
    # entities: typed objects, so entity2vec can read every one
    ({"id": "a", "entities": [{"wikidata_id": ["Q1"]}]}, ["body", "article", "entities", 0, "wikidata_id"],
     "valid string"),
    ({"id": "a", "entities": ["Q1"]}, ["body", "article", "entities", 0], "valid dictionary"),
    ({"id": "a", "entities": [{"wikidata_id": "Q1", "confidence": 1.5}]},
     ["body", "article", "entities", 0, "confidence"], "less than or equal to 1"),
    ({"id": "a", "entities": [{"wikidata_id": "Paris"}]}, ["body", "article", "entities", 0, "wikidata_id"],
     "pattern"),
    ({"id": "a", "entities": [{"label": "Paris"}]}, ["body", "article", "entities", 0, "wikidata_id"],
     "Field required"),
    ({"id": "a", "entities": [{"wikidata_id": "Q1", "rank": 1}]}, ["body", "article", "entities", 0, "rank"],
     "Extra inputs"),
    # text PostgreSQL cannot store, and times that leave the calendar once made UTC
    ({"id": "a\u0000b"}, ["body", "article", "id"], "NUL"),
    ({"id": "a", "title": "x\u0000"}, ["body", "article", "title"], "NUL"),
    ({"id": "a", "tags": ["ok", "n\u0000l"]}, ["body", "article", "tags", 1, "tag"], "NUL"),
    ({"id": "a", "entities": [{"wikidata_id": "Q1", "label": "\u0000"}]},
     ["body", "article", "entities", 0, "label"], "NUL"),
    ({"id": "a", "published_at": "0001-01-01T00:00:00+01:00"}, ["body", "article", "published_at"], "out of"),
    ({"id": "a", "expires_at": "9999-12-31T23:59:59-01:00"}, ["body", "article", "expires_at"], "out of"),
]


@pytest.mark.parametrize(("body", "loc", "message"), BAD_ARTICLES)
def test_a_malformed_body_is_422_saying_what_is_wrong(api, body, loc, message):
    response = api.post("/v1/articles", json=body)
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert any(e["loc"] == loc and message in e["msg"] for e in errors), errors


def test_nothing_of_a_malformed_batch_is_stored(api, world):
    good = {"id": f"new-{uuid.uuid4().hex[:8]}", "title": "Fine"}
    assert api.post("/v1/articles", json=[good, {"id": ""}]).status_code == 422
    assert stored_row(world, good["id"]) is None


@pytest.fixture
def redis_down_api(world: BuiltWorld) -> Iterator[TestClient]:
    settings = world.settings.model_copy(update={"redis_url": unused_redis_url()})
    with TestClient(create_app(settings), headers=key_headers(world.engine)) as client:
        yield client


def test_with_redis_down_the_article_is_stored_and_indexed_all_the_same(redis_down_api, world, existing):
    new = related(existing)
    response = redis_down_api.post("/v1/articles", json=new)
    assert response.status_code == 200, response.text
    assert response.json()["online"] is False and response.json()["indexed"] == {"tag2vec": 1}
    assert stored_row(world, new["id"]) is not None
    assert new["id"] in neighbours(redis_down_api, existing.id)


# ---- images and entities: what a posted article may make the server do ------------------------
IMAGES = Path(__file__).resolve().parents[3] / "shared" / "data" / "images"
CAT = "skimage_chelsea.png"
ENTITY_IDS = [f"Q{n}" for n in range(1, 31)]


class CountingImages(ThreadingHTTPServer):
    """shared/data/images over HTTP on a loopback address; ``requests`` lists the paths asked."""

    daemon_threads = True

    def __init__(self, host: str):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append(self.path)
                file = IMAGES / self.path.lstrip("/")
                if not file.is_file():
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(file.stat().st_size))
                self.end_headers()
                self.wfile.write(file.read_bytes())

        super().__init__((host, 0), Handler)
        self.requests: list[str] = []
        self.url = f"http://{host}:{self.server_port}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def image_servers() -> Iterator[tuple[CountingImages, CountingImages]]:
    """One server the world allows (127.0.0.1) and one it does not (127.0.0.2, loopback too)."""
    servers = CountingImages("127.0.0.1"), CountingImages("127.0.0.2")
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def media_world(tmp_path_factory) -> Iterator[BuiltWorld]:
    """A world whose build also serves img2vec (a small random ResNet) and entity2vec (a table of
    100-d vectors for Q1..Q30), fetching images only from the tests' own 127.0.0.1."""
    tmp = tmp_path_factory.mktemp("media-world")
    entities = tmp / "entity_embedding.vec"
    rng = np.random.default_rng(3)
    entities.write_text("".join("\t".join([entity, *(f"{x:.5f}" for x in rng.normal(size=100))]) + "\n"
                                for entity in ENTITY_IDS))
    with world_of_its_own(tmp, articles=150, users=30, days=2, build_encoders="tag2vec,img2vec,entity2vec",
                          image_backend="transformers", image_model_path=str(build_random_resnet(tmp / "resnet")),
                          entity_embeddings_path=str(entities), image_fetch_allow="127.0.0.1") as world:
        yield world


@pytest.fixture(scope="module")
def media_api(media_world: BuiltWorld) -> Iterator[TestClient]:
    with TestClient(create_app(media_world.settings), headers=key_headers(media_world.engine)) as client:
        yield client


@contextlib.contextmanager
def another_worker(world: BuiltWorld) -> Iterator[TestClient]:
    """A second serving process over the same SQL, Redis and var directory, reloading quickly."""
    settings = world.settings.model_copy(update={"reload_interval_seconds": 0.2})
    with TestClient(create_app(settings), headers=key_headers(world.engine)) as client:
        yield client


def live_index(client: TestClient, route: str):
    return client.app.state.service.state.indexes[route]


def eventually(check, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.1)


def built_index_ids(settings: Settings, route: str) -> set[str]:
    return set(ServingState.load(settings).indexes[route].row_of)


def test_an_image_is_fetched_once_by_the_post_for_every_worker_and_the_nightly(
        media_api, media_world, image_servers):
    allowed, _ = image_servers
    article = {"id": f"img-{uuid.uuid4().hex[:8]}", "title": "A cat", "image_ref": f"{allowed.url}/{CAT}"}
    before = len(allowed.requests)
    response = media_api.post("/v1/articles", json=article)
    assert response.status_code == 200, response.text
    assert response.json()["indexed"]["img2vec"] == 1
    assert allowed.requests[before:] == [f"/{CAT}"]
    assert stored_row(media_world, article["id"]).image_origin == "http"

    with another_worker(media_world) as worker:  # takes it from SQL on its reload tick (catch_up)
        eventually(lambda: article["id"] in live_index(worker, "img2vec"))
    result = run_nightly(media_world.settings, media_world.engine,
                         OnlineStore(redis.Redis.from_url(REDIS_URL), media_world.settings))
    assert article["id"] in built_index_ids(media_world.settings, "img2vec")
    assert result.counts["index:img2vec"] >= 1
    assert allowed.requests[before:] == [f"/{CAT}"], "fetched once: by the POST, kept for the others"


def test_an_image_at_an_internal_address_is_never_requested(media_api, image_servers):
    allowed, internal = image_servers
    article = {"id": f"img-{uuid.uuid4().hex[:8]}", "title": "Internal",
               "image_ref": f"{internal.url}/{CAT}"}
    metadata = {"id": f"img-{uuid.uuid4().hex[:8]}", "title": "Metadata",
                "image_ref": "http://169.254.169.254/latest/meta-data/iam/security-credentials/"}
    response = media_api.post("/v1/articles", json=[article, metadata])
    assert response.status_code == 200, response.text
    assert response.json()["indexed"]["img2vec"] == 0
    assert internal.requests == []


def test_a_path_that_came_over_http_is_never_read_by_catch_up_or_the_nightly(media_world, tmp_path):
    """A row the API stored before image_ref had to be a URL still names a file of the server:
    no process reads it. The same file named by a CLI ingest is read."""
    photo = str(IMAGES / CAT)
    now = datetime.now(UTC).replace(tzinfo=None)
    legacy = ArticleRecord(id=f"legacy-{uuid.uuid4().hex[:8]}", title="Posted long ago", image_ref=photo,
                           source="api", published_at=now)
    with Session(media_world.engine) as session:
        sqlstore.upsert_articles(session, [legacy])
        session.commit()
    ingested_id = f"cli-{uuid.uuid4().hex[:8]}"
    lines = tmp_path / "articles.jsonl"
    lines.write_text(json.dumps({"id": ingested_id, "title": "Ingested", "image": photo,
                                 "published_at": now.isoformat()}) + "\n")
    assert ingest_jsonl_articles(media_world.engine, lines).articles_stored == 1
    assert stored_row(media_world, ingested_id).image_origin == "local"
    assert stored_row(media_world, legacy.id).image_origin == "http"

    with another_worker(media_world) as worker:
        eventually(lambda: ingested_id in live_index(worker, "img2vec"))
        assert legacy.id in worker.app.state.service.state.catalog
        assert legacy.id not in live_index(worker, "img2vec")
    run_nightly(media_world.settings, media_world.engine,
                OnlineStore(redis.Redis.from_url(REDIS_URL), media_world.settings))
    built = built_index_ids(media_world.settings, "img2vec")
    assert ingested_id in built and legacy.id not in built


def test_a_bad_row_in_sql_stops_neither_catch_up_nor_the_nightly(media_world, media_api, tmp_path):
    """An entity whose wikidata_id is a list, ingested from a file that allows any object: the
    fast path, every worker's catch-up and the nightly build go on without it."""
    now = datetime.now(UTC).replace(tzinfo=None).isoformat()
    bad_id, good_id = f"bad-{uuid.uuid4().hex[:8]}", f"good-{uuid.uuid4().hex[:8]}"
    lines = tmp_path / "articles.jsonl"
    lines.write_text(json.dumps({"id": bad_id, "title": "Bad", "published_at": now,
                                 "entities": [{"wikidata_id": ["Q1"]}, {"wikidata_id": 7}]}) + "\n")
    assert ingest_jsonl_articles(media_world.engine, lines).articles_stored == 1
    good = {"id": good_id, "title": "Good", "entities": [{"wikidata_id": "Q1"}, {"wikidata_id": "Q2"}]}
    assert media_api.post("/v1/articles", json=good).json()["indexed"]["entity2vec"] == 1

    with another_worker(media_world) as worker:
        eventually(lambda: good_id in live_index(worker, "entity2vec"))
        assert bad_id in worker.app.state.service.state.catalog
        assert bad_id not in live_index(worker, "entity2vec")
    run_nightly(media_world.settings, media_world.engine,
                OnlineStore(redis.Redis.from_url(REDIS_URL), media_world.settings))
    built = built_index_ids(media_world.settings, "entity2vec")
    assert good_id in built and bad_id not in built
