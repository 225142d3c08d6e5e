"""Alembic migrations on SQLite and PostgreSQL: upgrade from nothing, down to nothing, up again,
and the migrated schema matches the SQLAlchemy models."""

from __future__ import annotations

import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from recall.db import downgrade, make_engine, upgrade
from recall.models import Base

INITIAL_TABLES = {"articles", "users", "events", "job_runs", "route_configs", "route_config_audit"}
CREDENTIAL_TABLES = {"admin_users", "api_keys"}  # 0002
TABLES = INITIAL_TABLES | CREDENTIAL_TABLES


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_engine(request, tmp_path):
    """An engine on a database with no tables at all."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
        yield engine
        engine.dispose()
        return
    # A schema of our own on the test server; pg_engine only lends its connection settings.
    server = request.getfixturevalue("pg_engine")
    schema = f"m_{uuid.uuid4().hex[:12]}"
    with server.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(server.url.update_query_dict({"options": f"-csearch_path={schema}"})
                         .render_as_string(hide_password=False))
    yield engine
    engine.dispose()
    with server.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


def tables(engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_downgrade_upgrade(empty_engine):
    assert tables(empty_engine) == set()
    upgrade(empty_engine)
    assert tables(empty_engine) == TABLES
    downgrade(empty_engine, "base")
    assert tables(empty_engine) == set()
    upgrade(empty_engine)
    assert tables(empty_engine) == TABLES
    with empty_engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id) VALUES ('u1')"))
        assert conn.execute(text("SELECT count(*) FROM users")).scalar() == 1


def test_credentials_migrate_down_and_up_alone(empty_engine):
    upgrade(empty_engine)
    with empty_engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id) VALUES ('u1')"))
    downgrade(empty_engine, "0001")
    assert tables(empty_engine) == INITIAL_TABLES
    upgrade(empty_engine, "0002")
    assert tables(empty_engine) == TABLES
    with empty_engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar() == 1  # data kept
        conn.execute(text("INSERT INTO api_keys (id, name, secret_sha256, created_at) "
                          "VALUES ('k1', 'n', 'h', CURRENT_TIMESTAMP)"))


def test_migrated_schema_matches_the_models(empty_engine):
    upgrade(empty_engine)
    with empty_engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
