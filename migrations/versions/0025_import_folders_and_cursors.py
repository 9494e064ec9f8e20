"""The folders imported mail came from, and how far each IMAP mailbox was imported

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-10 10:00:00

`message_folders` holds one row per (message, folder) an import found it in: a PST folder
or an IMAP mailbox, searched with `folder:`. `import_cursors` remembers, per IMAP mailbox
URL (never with a password), its UIDVALIDITY and the highest UID archived, so a rerun of
`arsip import imap://...` fetches only newer mail. On PostgreSQL the search table gains
the folders' words; rows indexed before have none, as no message had a folder before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "message_folders",
        sa.Column(
            "message_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("folder", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_pk"],
            ["messages.id"],
            name=op.f("fk_message_folders_message_pk_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("message_pk", "folder", name=op.f("pk_message_folders")),
    )
    op.create_table(
        "import_cursors",
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_import_cursors")),
    )
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite searches with whoosh, whose index carries the folders itself
    op.add_column(
        "search_documents",
        sa.Column(
            "folders",
            postgresql.TSVECTOR(),
            nullable=False,
            server_default=sa.text("''::tsvector"),
        ),
    )
    op.execute("CREATE INDEX ix_search_documents_folders ON search_documents USING gin (folders)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_search_documents_folders", table_name="search_documents")
        op.drop_column("search_documents", "folders")
    op.drop_table("import_cursors")
    op.drop_table("message_folders")
