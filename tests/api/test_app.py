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
    assert paths == {"/healthz", "/readyz", "/v1/recall/{user_id}", "/v1/items/{item_id}/similar",
                     "/v1/events", "/v1/routes"}


def test_a_build_published_while_serving_is_picked_up(small_world, online):
    settings = small_world.settings.model_copy(update={"reload_interval_seconds": 0.1})
    first = small_world.build.version
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/routes").json()["version"] == first
        second = run_nightly(settings, small_world.engine, online).version
        assert second != first
        assert wait_for(lambda: client.get("/v1/routes").json()["version"] == second)
        assert client.get("/v1/recall/u1").json()["version"] == second


def test_route_config_edits_apply_without_restart(settings, sqlite_engine, online):
    settings = settings.model_copy(update={"reload_interval_seconds": 0.1})
    with TestClient(create_app(settings)) as client:
        assert "fresh" in client.get("/v1/recall/u1", params={"explain": "true"}).json()["routes"]
        with Session(sqlite_engine) as session:
            update_route_config(session, "fresh", "test-editor", enabled=False, quota=7)

        def fresh_config() -> dict:
            return next(r for r in client.get("/v1/routes").json()["routes"] if r["name"] == "fresh")

        assert wait_for(lambda: fresh_config()["enabled"] is False)
        assert fresh_config()["quota"] == 7
        assert "fresh" not in client.get("/v1/recall/u1", params={"explain": "true"}).json()["routes"]
