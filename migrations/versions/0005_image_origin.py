"""articles.image_origin: where an article's image_ref came from, "http" (the API: only ever
fetched as an http(s) URL, never read as a path) or "local" (CLI ingest by an operator: may name
a file on the server).

Existing rows are classified by their source: articles the API stored ("api") and id-only
references are "http", everything a CLI ingest stored is "local".

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The sources of `recall ingest ...` (jobs/ingest/): rows an operator loaded from files.
CLI_SOURCES = ("jsonl", "mind", "tnews", "synthetic")


def upgrade() -> None:
    with op.batch_alter_table("articles") as batch:
        batch.add_column(sa.Column("image_origin", sa.String(8), nullable=False, server_default="http"))
    articles = sa.table("articles", sa.column("source", sa.String), sa.column("image_origin", sa.String))
    op.execute(articles.update().where(articles.c.source.in_(CLI_SOURCES)).values(image_origin="local"))


def downgrade() -> None:
    with op.batch_alter_table("articles") as batch:
        batch.drop_column("image_origin")
