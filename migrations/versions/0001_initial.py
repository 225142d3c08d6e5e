"""Initial schema: articles, users, events, job_runs, route_configs and their audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "articles",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("title", sa.Text()),
        sa.Column("body", sa.Text()),
        sa.Column("category", sa.String(128)),
        sa.Column("subcategory", sa.String(128)),
        sa.Column("media_id", sa.String(128)),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("entities", sa.JSON(), nullable=False),
        sa.Column("image_ref", sa.Text()),
        sa.Column("url", sa.Text()),
        sa.Column("published_at", sa.DateTime()),
        sa.Column("expires_at", sa.DateTime()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("id_only", sa.Boolean(), nullable=False),
        sa.Column("content_hash", sa.String(64)),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_articles_category", "articles", ["category"])
    op.create_index("ix_articles_published_at", "articles", ["published_at"])

    op.create_table(
        "users",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("first_seen_at", sa.DateTime()),
    )

    op.create_table(
        "events",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("event_key", sa.String(255), nullable=False, unique=True),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("article_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ts", sa.DateTime(), nullable=False),
        sa.Column("impression_id", sa.String(128)),
        sa.Column("source", sa.String(32), nullable=False),
    )
    op.create_index("ix_events_user_ts", "events", ["user_id", "ts"])
    op.create_index("ix_events_article_id", "events", ["article_id"])
    op.create_index("ix_events_ts", "events", ["ts"])

    op.create_table(
        "job_runs",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("step", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime()),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("artefact_version", sa.String(64)),
        sa.Column("error", sa.Text()),
    )
    op.create_index("ix_job_runs_run_id", "job_runs", ["run_id"])

    op.create_table(
        "route_configs",
        sa.Column("route", sa.String(64), primary_key=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("quota", sa.Integer(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
    )

    op.create_table(
        "route_config_audit",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("route", sa.String(64), nullable=False),
        sa.Column("changed_by", sa.String(128), nullable=False),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.Column("old", sa.JSON()),
        sa.Column("new", sa.JSON(), nullable=False),
    )
    op.create_index("ix_route_config_audit_route", "route_config_audit", ["route"])


def downgrade() -> None:
    op.drop_table("route_config_audit")
    op.drop_table("route_configs")
    op.drop_index("ix_job_runs_run_id", "job_runs")
    op.drop_table("job_runs")
    op.drop_index("ix_events_ts", "events")
    op.drop_index("ix_events_article_id", "events")
    op.drop_index("ix_events_user_ts", "events")
    op.drop_table("events")
    op.drop_table("users")
    op.drop_index("ix_articles_published_at", "articles")
    op.drop_index("ix_articles_category", "articles")
    op.drop_table("articles")
