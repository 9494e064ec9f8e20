"""Retention counts from arrival; the search table's viewer filter names only who may read

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 02:00:00

`messages.retention_date` is the date retention ages a message by (`archiver.retention.
clock`): the later of its `Date:` header and its arrival for mail the intake received,
`Date:` alone for imported mail. Existing rows get it here by the same rule; an index on
(retention_date, id) serves the sweep's keyset paging as the date index did before.

On PostgreSQL, `search_documents.participants` (the viewer filter of search) held every
address a message names, Reply-To included; it is rewritten here to the addresses whose
roles grant access (`archiver.access.GRANTING_ROLES`), so no `arsip reindex` is needed.
The whoosh index gets the same change through a new schema version (a rebuild).

SQLite adds the column with a placeholder default (it cannot add a NOT NULL column
without one, and a batch "copy and rename" of `messages` would delete every row that
refers to it) and drops it in place on downgrade (SQLite 3.35 or newer).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_messages_retention_date_id"
# As `archiver.access.GRANTING_ROLES` says at this revision (a migration keeps its own copy).
GRANTING_ROLES = ("from", "to", "cc", "bcc", "envelope_from", "envelope_to")


def upgrade() -> None:
    bind = op.get_bind()
    op.add_column(
        "messages",
        sa.Column(
            "retention_date",
            sa.DateTime(),
            nullable=False,
            server_default=sa.text("'1970-01-01 00:00:00'"),
        ),
    )
    op.execute(
        "UPDATE messages SET retention_date = CASE "
        "WHEN source = 'import' OR received_at < date THEN date ELSE received_at END"
    )
    if bind.dialect.name == "postgresql":
        op.alter_column("messages", "retention_date", server_default=None)
    op.create_index(INDEX, "messages", ["retention_date", "id"])
    if bind.dialect.name == "postgresql":
        _participants(GRANTING_ROLES)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        _participants(None)
    op.drop_index(INDEX, table_name="messages")
    op.execute("ALTER TABLE messages DROP COLUMN retention_date")


def _participants(roles: tuple[str, ...] | None) -> None:
    """Fill the search table's participants from the address rows (None: every role)."""
    only = "" if roles is None else " AND a.role IN (" + ", ".join(f"'{r}'" for r in roles) + ")"
    op.execute(
        "UPDATE search_documents AS d SET participants = ARRAY("
        "SELECT DISTINCT a.address FROM message_addresses AS a "
        f"WHERE a.message_pk = d.message_pk{only} ORDER BY a.address)"
    )
