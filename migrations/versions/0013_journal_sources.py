"""Who handed a message in: the spool records whether its client was a trusted journal
source, and the search table carries the marks `is:duplicate-id` and `is:postmaster` find

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 02:00:00

`spool.trusted` is NULL for rows accepted before this revision: the worker judges those by
their recorded peer address against `ARSIP_JOURNAL_CLIENTS`. Messages archived before it
keep their dedupe key (Message-ID and body); the archive brings a key up to date when a
new copy of that message arrives (`archiver.archive.Archive._existing`). The marks are new,
so no row indexed before this revision has one and nothing needs reindexing.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("spool", sa.Column("trusted", sa.Boolean(), nullable=True))
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite searches with whoosh, whose index carries the marks itself
    op.add_column(
        "search_documents",
        sa.Column(
            "marks",
            postgresql.ARRAY(sa.Text()),
            nullable=False,
            server_default=sa.text("'{}'::text[]"),
        ),
    )
    op.execute("CREATE INDEX ix_search_documents_marks ON search_documents USING gin (marks)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_search_documents_marks", table_name="search_documents")
        op.drop_column("search_documents", "marks")
    with op.batch_alter_table("spool") as batch:
        batch.drop_column("trusted")
