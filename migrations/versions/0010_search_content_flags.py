"""The content checks' verdict in the full text search table (PostgreSQL only)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27 15:00:00

`is:spam` and `has:virus` filter on two flags of `search_documents`, as `has:attachment`
does; rows indexed before this revision take theirs from `content_checks` here, so no
`arsip reindex` is needed. Partial indexes find the few flagged rows without a scan.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FLAGS = ("is_spam", "has_virus")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite searches with whoosh, whose index carries the flags itself
    for name in FLAGS:
        op.add_column(
            "search_documents",
            sa.Column(name, sa.Boolean(), nullable=False, server_default=sa.false()),
        )
    op.execute(
        "UPDATE search_documents AS d SET is_spam = c.spam, has_virus = c.virus IS NOT NULL "
        "FROM content_checks AS c "
        "WHERE c.message_pk = d.message_pk AND (c.spam OR c.virus IS NOT NULL)"
    )
    for name in FLAGS:
        op.create_index(
            f"ix_search_documents_{name}",
            "search_documents",
            ["date"],
            postgresql_where=sa.text(name),
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in FLAGS:
        op.drop_index(f"ix_search_documents_{name}", table_name="search_documents")
        op.drop_column("search_documents", name)
