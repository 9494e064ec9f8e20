"""Several accounts may claim an address; at most one may have it verified

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 11:00:00

An address claimed but never verified used to block it for every other account. The
unique constraint on the address gives way to a unique index over verified rows only (a
partial index, on SQLite and PostgreSQL alike), one claim per account and address, and
a plain index for looking claims up by address.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("user_addresses", schema=None) as batch_op:
        batch_op.drop_constraint("uq_user_addresses_address", type_="unique")
        batch_op.create_unique_constraint(
            "uq_user_addresses_user_id_address", ["user_id", "address"]
        )
    # Outside the batch: SQLite creates indexes in place, and the partial one keeps its
    # WHERE clause without relying on batch mode to carry dialect options across a copy.
    op.create_index("ix_user_addresses_address", "user_addresses", ["address"], unique=False)
    op.create_index(
        "ix_user_addresses_verified_address",
        "user_addresses",
        ["address"],
        unique=True,
        sqlite_where=sa.text("verified"),
        postgresql_where=sa.text("verified"),
    )


def downgrade() -> None:
    # The old schema allows one claim an address: keep the verified one, or else the
    # oldest, and drop the rest.
    connection = op.get_bind()
    rows = connection.execute(
        sa.text("SELECT id, address, verified FROM user_addresses ORDER BY verified DESC, id")
    ).all()
    kept: set[str] = set()
    extra: list[int] = []
    for row_id, address, _verified in rows:
        if address in kept:
            extra.append(row_id)
        kept.add(address)
    if extra:
        table = sa.table("user_addresses", sa.column("id"))
        connection.execute(sa.delete(table).where(table.c.id.in_(extra)))
    op.drop_index("ix_user_addresses_verified_address", table_name="user_addresses")
    op.drop_index("ix_user_addresses_address", table_name="user_addresses")
    with op.batch_alter_table("user_addresses", schema=None) as batch_op:
        batch_op.drop_constraint("uq_user_addresses_user_id_address", type_="unique")
        batch_op.create_unique_constraint("uq_user_addresses_address", ["address"])
