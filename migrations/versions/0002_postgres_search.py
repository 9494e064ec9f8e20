"""PostgreSQL full text search table (created on PostgreSQL only)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 06:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite searches with whoosh; the table would have no use there
    op.create_table(
        "search_documents",
        sa.Column("message_pk", sa.BigInteger(), nullable=False),
        sa.Column("document", postgresql.TSVECTOR(), nullable=False),
        sa.Column("subject", postgresql.TSVECTOR(), nullable=False),
        sa.Column("filenames", postgresql.TSVECTOR(), nullable=False),
        sa.Column("from_tokens", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("to_tokens", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("cc_tokens", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("participants", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("list_id", sa.Text(), nullable=True),
        sa.Column("sender_domain", sa.String(length=255), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("date", sa.DateTime(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("has_attachment", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["message_pk"], ["messages.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("message_pk"),
    )
    for column in (
        "document",
        "subject",
        "filenames",
        "from_tokens",
        "to_tokens",
        "cc_tokens",
        "participants",
    ):
        op.create_index(
            f"ix_search_documents_{column}", "search_documents", [column], postgresql_using="gin"
        )
    for column in ("message_id", "list_id", "date"):
        op.create_index(f"ix_search_documents_{column}", "search_documents", [column])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_table("search_documents")
