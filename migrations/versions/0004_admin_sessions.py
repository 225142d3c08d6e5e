"""Editors' sessions that end on the server: admin_users.session_version.

Every signed session cookie carries the version it was made with; logging out, disabling the
editor or a new password moves it on, and a cookie of another version is no session any more.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode: SQLite alters a table by copying it (PostgreSQL alters it in place).
    with op.batch_alter_table("admin_users") as batch:
        batch.add_column(sa.Column("session_version", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("admin_users") as batch:
        batch.drop_column("session_version")
