"""SQL tables (SQLAlchemy 2). The schema itself is owned by Alembic (``migrations/``).

All timestamps are naive UTC: SQLite keeps no zone, so we never store one anywhere.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Text,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class Article(Base):
    __tablename__ = "articles"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    title: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)  # abstract or body text
    category: Mapped[str | None] = mapped_column(String(128), index=True)
    subcategory: Mapped[str | None] = mapped_column(String(128))
    media_id: Mapped[str | None] = mapped_column(String(128))
    # [[tag, weight], ...] ordered by weight, strongest first.
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # [{"label", "type", "wikidata_id", "confidence"}, ...]
    entities: Mapped[list[Any]] = mapped_column(JSON, default=list)
    image_ref: Mapped[str | None] = mapped_column(Text)
    # Where image_ref came from: "http" (the API: only ever fetched as an http(s) URL, never read
    # as a path) or "local" (CLI ingest: an operator's file may be read). Whoever stores the row
    # sets it (api/routes/articles.py, jobs/ingest/common.py); unknown writers get "http".
    image_origin: Mapped[str] = mapped_column(String(8), default="http", server_default="http")
    url: Mapped[str | None] = mapped_column(Text)
    published_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | hidden
    source: Mapped[str] = mapped_column(String(32), default="jsonl")
    # True for ids referenced by events but never described (MIND's slice has many).
    id_only: Mapped[bool] = mapped_column(Boolean, default=False)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    # Indexed: every serving process asks for the articles changed since its build (api/reload.py).
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=datetime.utcnow, index=True)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    first_seen_at: Mapped[datetime | None] = mapped_column(DateTime)


class Event(Base):
    """Append-only impressions and clicks."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_user_ts", "user_id", "ts"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # Deterministic key from the source row, so re-ingesting the same file stores nothing twice.
    event_key: Mapped[str] = mapped_column(String(255), unique=True)
    user_id: Mapped[str] = mapped_column(String(128))
    article_id: Mapped[str] = mapped_column(String(128), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # impression | click
    ts: Mapped[datetime] = mapped_column(DateTime, index=True)
    # Set for events of an impression (MIND rows); history clicks and API clicks may have none.
    impression_id: Mapped[str | None] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(32), default="api")
    # The outbox: stored by the API but not applied to Redis yet (Redis was down); drained when
    # Redis answers again (``recall.outbox``).
    pending_online: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false(), index=True)


class JobRun(Base):
    __tablename__ = "job_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64), index=True)
    job: Mapped[str] = mapped_column(String(64))
    step: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # running | ok | failed | skipped
    started_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    artefact_version: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)


class RouteConfig(Base):
    __tablename__ = "route_configs"

    route: Mapped[str] = mapped_column(String(64), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    quota: Mapped[int] = mapped_column(Integer, default=200)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=datetime.utcnow)
    updated_by: Mapped[str] = mapped_column(String(128), default="system")


class RouteConfigAudit(Base):
    __tablename__ = "route_config_audit"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    route: Mapped[str] = mapped_column(String(64), index=True)
    changed_by: Mapped[str] = mapped_column(String(128))
    changed_at: Mapped[datetime] = mapped_column(DateTime)
    old: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    new: Mapped[dict[str, Any]] = mapped_column(JSON)


class AdminUser(Base):
    """An editor who may log in to the admin pages (``recall admin create-user``)."""

    __tablename__ = "admin_users"

    username: Mapped[str] = mapped_column(String(128), primary_key=True)
    # "scrypt$n$r$p$salt$hash" (recall/credentials.py), never the password itself.
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Every session cookie carries the version it was made with; logging out, disabling the
    # editor or setting a new password moves it on, so every session made before ends (0004).
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ApiKey(Base):
    """A feed backend's key (``recall admin create-key``); only the secret's sha256 is kept."""

    __tablename__ = "api_keys"

    # The key's public part, shown in listings and used to revoke it.
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)
