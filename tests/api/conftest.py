"""A real world behind the API: synthetic articles and events in SQLite, a nightly build, Redis.

The world ends now (the API serves at wall-clock time), so its recent articles are live and its
last day of clicks is what the hot route counts. Building it takes a few seconds, so one world
and one running app serve every API test; tests stay independent by using user ids of their own
(``user_id``). Tests that change the build or the route configs get their own var directory,
database and Redis prefix (``small_world``, ``no_build_client``). Every client carries an API
key of its database (``key_headers``): the endpoints under /v1 need one.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.app import create_app
from jobs.ingest.synthetic import ingest_synthetic
from jobs.nightly import NightlyResult, run_nightly
from recall.credentials import create_key
from recall.db import make_engine, upgrade
from recall.online import OnlineStore
from recall.routes import ROUTES
from recall.settings import Settings
from recall.synthetic import SyntheticWorld, generate

# The same Redis as tests/conftest.py's fixtures (database 15 of the local server).
REDIS_URL = os.environ.get("RECALL_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@dataclass
class BuiltWorld:
    settings: Settings
    engine: Engine
    world: SyntheticWorld
    build: NightlyResult


def build_world(settings: Settings, engine: Engine, online: OnlineStore, *,
                articles: int, users: int, days: int) -> tuple[SyntheticWorld, NightlyResult]:
    """Generate a world ending now, ingest it and publish a build of it."""
    now = datetime.now(UTC).replace(tzinfo=None)
    world = generate(articles, users, days, seed=5, start=now - timedelta(days=days))
    ingest_synthetic(engine, world)
    return world, run_nightly(settings, engine, online)


def key_headers(engine: Engine) -> dict[str, str]:
    """Headers carrying a new API key of the (migrated) database behind ``engine``."""
    with Session(engine) as session:
        _, key = create_key(session, "tests")
    return {"Authorization": f"Bearer {key}"}


def csrf_of(page: str) -> str:
    """The CSRF token an admin page's forms carry."""
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def log_in(browser: TestClient, username: str, password: str, wanted: str = "/admin/users"):
    """Post the admin login form as a browser would (token from the form page); the response."""
    token = csrf_of(browser.get("/admin/login").text)
    return browser.post("/admin/login", data={"username": username, "password": password,
                                              "csrf_token": token, "next": wanted}, follow_redirects=False)


def unused_redis_url() -> str:
    """A Redis URL on a port nothing listens on (the OS just handed it out and took it back)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


@contextlib.contextmanager
def world_of_its_own(tmp: Path, *, articles: int, users: int, days: int, **settings: Any) -> Iterator[BuiltWorld]:
    """A world with its own var directory, SQLite file and Redis prefix, cleaned up afterwards
    (on the tests' Redis unless ``redis_url`` names another)."""
    settings = Settings(
        _env_file=None,
        var_dir=tmp / "var",
        database_url=f"sqlite:///{tmp / 'recall.db'}",
        redis_url=settings.pop("redis_url", REDIS_URL),
        redis_prefix=f"t{uuid.uuid4().hex[:10]}:",
        # The API is the same for every vector route; one keeps it fast (unless a test needs more).
        build_encoders=settings.pop("build_encoders", "tag2vec"),
        admin_cookie_https_only=False,  # TestClient speaks plain http
        **settings,
    )
    engine = make_engine(settings.sqlalchemy_url)
    upgrade(engine)
    client = redis.Redis.from_url(settings.redis_url)
    online = OnlineStore(client, settings)
    world, build = build_world(settings, engine, online, articles=articles, users=users, days=days)
    try:
        yield BuiltWorld(settings, engine, world, build)
    finally:
        online.flush_namespace()
        client.close()
        engine.dispose()


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Iterator[BuiltWorld]:
    # Small limits, so that capping visibly cuts lists the world can fill.
    with world_of_its_own(tmp_path_factory.mktemp("api-world"), articles=400, users=80, days=4,
                          default_n=40, max_n=60, similar_max_n=15) as world:
        yield world


@pytest.fixture(scope="session")
def served(built: BuiltWorld) -> set[str]:
    """Fallback routes, and every vector route whose index the build filled."""
    return {name for name, spec in ROUTES.items()
            if spec.encoder is None or built.build.counts.get(f"index:{name}", 0) > 0}


@pytest.fixture(scope="session")
def client(built: BuiltWorld) -> Iterator[TestClient]:
    # No outbox ticks in this session-long app: one would apply events a Redis-down app of another
    # test left pending at a moment of its own choosing (between that test's post and its check).
    # The drain is tested on its own (tests/recall/test_outbox.py) and in apps of its own (test_faults).
    settings = built.settings.model_copy(update={"outbox_interval_seconds": 24 * 3600.0})
    with TestClient(create_app(settings), headers=key_headers(built.engine)) as test_client:
        yield test_client


@pytest.fixture
def redis_down_client(built: BuiltWorld) -> Iterator[TestClient]:
    """The same world and build, but Redis unreachable."""
    settings = built.settings.model_copy(update={"redis_url": unused_redis_url()})
    with TestClient(create_app(settings), headers=key_headers(built.engine)) as test_client:
        yield test_client


@pytest.fixture
def user_id() -> str:
    """A user nobody else has seen: what a test posts for it touches no other test."""
    return f"api-user-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def small_world(settings: Settings, sqlite_engine: Engine, online: OnlineStore) -> BuiltWorld:
    """A world and build of this test's own (tests/conftest.py's settings, SQLite and Redis prefix)."""
    world, build = build_world(settings, sqlite_engine, online, articles=150, users=30, days=2)
    return BuiltWorld(settings, sqlite_engine, world, build)


@pytest.fixture
def no_build_client(settings: Settings, sqlite_engine: Engine, online: OnlineStore) -> Iterator[TestClient]:
    """An app over an empty database and no published build (``online`` cleans its Redis prefix)."""
    with TestClient(create_app(settings), headers=key_headers(sqlite_engine)) as test_client:
        yield test_client
