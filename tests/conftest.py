"""Fixtures that build real stores: a migrated SQLite file, a fresh PostgreSQL schema, a Redis
database (number 15 of the local server) with a per-test key prefix, and settings that point at
a temporary var directory. Everything is removed after the test.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import pytest
import ray
import redis
from sqlalchemy import text

from recall.db import make_engine, make_sessionmaker, upgrade
from recall.online import OnlineStore
from recall.rebuild import mark_whole
from recall.settings import Settings

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PG_URL = os.environ.get("RECALL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("RECALL_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session", autouse=True)
def local_ray():
    """One local Ray for the whole session (the nightly's steps are Ray work): two CPUs, a capped
    object store. ``jobs.raywork.ray_runtime`` uses it instead of starting its own per run."""
    ray.init(num_cpus=2, object_store_memory=512 << 20, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)
    yield
    ray.shutdown()


@pytest.fixture
def shared_data() -> Path:
    assert SHARED_DATA.exists(), f"the shared datasets are expected at {SHARED_DATA}"
    return SHARED_DATA


@pytest.fixture
def redis_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def settings(tmp_path: Path, redis_prefix: str) -> Settings:
    return Settings(
        _env_file=None,
        var_dir=tmp_path / "var",
        database_url=f"sqlite:///{tmp_path / 'recall.db'}",
        redis_url=REDIS_URL,
        redis_prefix=redis_prefix,
        tag2vec_epochs=10,
        # Nightly runs in tests build the tag2vec route only; every other encoder has its own
        # tests, and tests/jobs/test_nightly_all_encoders.py builds them all once.
        build_encoders="tag2vec",
        admin_cookie_https_only=False,  # test clients speak plain http
    )


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    yield client
    client.close()


@pytest.fixture
def online(redis_client, settings: Settings):
    """The test's Redis namespace, marked whole as a nightly run leaves it (recall/rebuild.py)."""
    store = OnlineStore(redis_client, settings)
    mark_whole(store, "tests")
    yield store
    store.flush_namespace()


@pytest.fixture
def sqlite_engine(settings: Settings):
    engine = make_engine(settings.sqlalchemy_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_engine():
    """A migrated, empty PostgreSQL schema of its own, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(f"{PG_URL}?options=-csearch_path%3D{schema}")
    upgrade(engine)
    yield engine
    engine.dispose()
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, settings: Settings):
    """Both databases: tests that take this run once against each."""
    yield request.getfixturevalue("sqlite_engine" if request.param == "sqlite" else "pg_engine")


@pytest.fixture
def sessions(engine):
    return make_sessionmaker(engine)
