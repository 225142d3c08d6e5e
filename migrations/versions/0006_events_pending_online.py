"""events.pending_online: events the API stored but has not applied to Redis yet (the outbox).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("pending_online", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index("ix_events_pending_online", "events", ["pending_online"])


def downgrade() -> None:
    op.drop_index("ix_events_pending_online", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("pending_online")
