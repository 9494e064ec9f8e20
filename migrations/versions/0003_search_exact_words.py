"""Words as written, for ranking exact forms first (PostgreSQL only)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 08:20:00

Rows indexed before this revision have no such words (NULL) until `arsip reindex`; they
still match and rank, only without the exact-form bonus.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.add_column("search_documents", sa.Column("exact", postgresql.TSVECTOR(), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_column("search_documents", "exact")
