"""Index articles.updated_at: serving processes poll for articles changed since their build.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_articles_updated_at", "articles", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_articles_updated_at", table_name="articles")
