"""Rate limits shared by every web process: failed logins, mailed links

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 10:31:01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "throttle_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=320), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_throttle_events")),
    )
    with op.batch_alter_table("throttle_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_throttle_events_at"), ["at"], unique=False)
        batch_op.create_index(
            "ix_throttle_events_scope_key_at", ["scope", "key", "at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("throttle_events", schema=None) as batch_op:
        batch_op.drop_index("ix_throttle_events_scope_key_at")
        batch_op.drop_index(batch_op.f("ix_throttle_events_at"))
    op.drop_table("throttle_events")
