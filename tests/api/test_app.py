"""The app factory and its lifespan: nothing built before startup, new builds and route
configs swapped in while the app runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from api.app import create_app
from jobs.nightly import run_nightly
from recall.routeconfig import update_route_config
from tests.api.conftest import key_headers

WAIT_SECONDS = 15.0


def wait_for(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_the_factory_opens_nothing_until_startup(settings):
    database = Path(settings.sqlalchemy_url.removeprefix("sqlite:///"))
    app = create_app(settings)
    assert not database.exists() and not hasattr(app.state, "service")
    with TestClient(app) as client:
        assert database.exists()  # created and migrated by the lifespan
        assert client.get("/readyz").json()["checks"]["sql"] is True


def test_openapi_documents_every_endpoint(client):
    assert client.get("/docs").status_code == 200
    paths = set(client.get("/openapi.json").json()["paths"])
    assert paths == {"/healthz", "/readyz", "/metrics", "/v1/recall/{user_id}", "/v1/items/{item_id}/similar",
                     "/v1/events", "/v1/articles", "/v1/routes"}


def test_a_build_published_while_serving_is_picked_up(small_world, online):
    settings = small_world.settings.model_copy(update={"reload_interval_seconds": 0.1})
    first = small_world.build.version
    with TestClient(create_app(settings), headers=key_headers(small_world.engine)) as client:
        assert client.get("/v1/routes").json()["version"] == first
        second = run_nightly(settings, small_world.engine, online).version
        assert second != first
        assert wait_for(lambda: client.get("/v1/routes").json()["version"] == second)
        assert client.get("/v1/recall/u1").json()["version"] == second


def test_an_article_posted_to_one_worker_reaches_the_others(small_world):
    """Two apps over one database and build stand for two workers: the one that did not get the
    POST indexes the article on its next reload tick (from SQL)."""
    settings = small_world.settings.model_copy(update={"reload_interval_seconds": 0.1})
    headers = key_headers(small_world.engine)
    related = next(a for a in small_world.world.articles if len(a.tags) >= 3)
    article = {"id": "posted-1", "title": related.title, "category": related.category,
               "tags": [{"tag": t, "weight": w} for t, w in related.tags]}
    with TestClient(create_app(settings), headers=headers) as first, \
            TestClient(create_app(settings), headers=headers) as second:
        def similar(client: TestClient) -> set[str]:
            answer = client.get(f"/v1/items/{related.id}/similar", params={"route": "tag2vec", "n": 15})
            return {n["item_id"] for n in answer.json()["neighbours"]}

        assert first.post("/v1/articles", json=article).status_code == 200
        assert "posted-1" in similar(first)
        assert wait_for(lambda: "posted-1" in similar(second))


def test_route_config_edits_apply_without_restart(settings, sqlite_engine, online):
    settings = settings.model_copy(update={"reload_interval_seconds": 0.1})
    with TestClient(create_app(settings), headers=key_headers(sqlite_engine)) as client:
        assert "fresh" in client.get("/v1/recall/u1", params={"explain": "true"}).json()["routes"]
        with Session(sqlite_engine) as session:
            update_route_config(session, "fresh", "test-editor", enabled=False, quota=7)

        def fresh_config() -> dict:
            return next(r for r in client.get("/v1/routes").json()["routes"] if r["name"] == "fresh")

        assert wait_for(lambda: fresh_config()["enabled"] is False)
        assert fresh_config()["quota"] == 7
        assert "fresh" not in client.get("/v1/recall/u1", params={"explain": "true"}).json()["routes"]
