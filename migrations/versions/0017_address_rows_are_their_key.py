"""Address rows are their own key: no surrogate id, no rowid on SQLite

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 02:00:00

`message_addresses` has the most rows of any table: on real list mail, with long Cc lists,
27 a message, and with its two indexes 70% of the database. Each row had an id nobody
reads, and the unique (message, role, address) constraint kept a second copy of every row
in its index. Now (message, role, address) is the primary key, and on SQLite the table is
`WITHOUT ROWID`: the table is that index, stored once. The (address, role) index that
access checks use stays.

SQLite copies the rows into the new table and renames it (nothing refers to this table,
so with foreign keys enforced the copy loses nothing); PostgreSQL changes the key in place.
The space the old table took is handed back by `arsip db compact`.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "message_addresses"
NEW = "message_addresses_rebuilt"
PK = "pk_message_addresses"
UNIQUE = "uq_message_addresses_message_pk"  # as 0001 named them
FK = "fk_message_addresses_message_pk_messages"
INDEX = "ix_message_addresses_address_role"
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
KEY = ("message_pk", "role", "address")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(UNIQUE, TABLE, type_="unique")
        op.drop_constraint(PK, TABLE, type_="primary")
        op.drop_column(TABLE, "id")
        op.create_primary_key(PK, TABLE, list(KEY))
        return
    _rebuild_sqlite(with_id=False)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(PK, TABLE, type_="primary")
        op.add_column(TABLE, sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False))
        op.create_primary_key(PK, TABLE, ["id"])
        op.create_unique_constraint(UNIQUE, TABLE, list(KEY))
        return
    _rebuild_sqlite(with_id=True)


def _rebuild_sqlite(with_id: bool) -> None:
    """Copy the rows into a table of the wanted shape, then put it in the old one's place:
    SQLite cannot change a table's key or rowid in place."""
    id_column = [sa.Column("id", ID, autoincrement=True, nullable=False)] if with_id else []
    key = [sa.PrimaryKeyConstraint("id", name=PK), sa.UniqueConstraint(*KEY, name=UNIQUE)]
    op.create_table(
        NEW,
        *id_column,
        sa.Column("message_pk", ID, nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["message_pk"], ["messages.id"], name=FK, ondelete="CASCADE"),
        *(key if with_id else [sa.PrimaryKeyConstraint(*KEY, name=PK)]),
        sqlite_with_rowid=with_id,
    )
    op.execute(
        f"INSERT INTO {NEW} (message_pk, role, address, name)"
        f" SELECT message_pk, role, address, name FROM {TABLE}"
        " ORDER BY message_pk, role, address"
    )
    op.drop_table(TABLE)
    op.rename_table(NEW, TABLE)
    op.create_index(INDEX, TABLE, ["address", "role"])
