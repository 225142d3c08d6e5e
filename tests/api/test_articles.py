"""POST /v1/articles: a new article is stored in SQL and recallable at once, without a build.

The fast path grows the app's live indexes, so these tests run an app over a world of their own
(tests/api/conftest.py's session app serves tests that count its index). Every test posts
articles and users of its own ids; the world and app are shared by the module.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.app import create_app
from api.schemas import MAX_ARTICLES_PER_REQUEST
from encoders.tag2vec import top_tags
from recall.domain import ArticleRecord
from recall.models import Article
from tests.api.conftest import BuiltWorld, key_headers, unused_redis_url, world_of_its_own


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
    as_strings = related(existing, tags=tags, abstract="An abstract.", image="/no/such/image.jpg")
    del as_strings["body"]
    as_object = related(existing, tags={tag: weight for tag, weight in existing.tags})
    for article in (as_strings, as_object):
        response = api.post("/v1/articles", json=article)
        assert response.status_code == 200, response.text
        assert article["id"] in neighbours(api, existing.id)
    row = stored_row(world, as_strings["id"])
    assert row.body == "An abstract." and row.image_ref == "/no/such/image.jpg"
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
