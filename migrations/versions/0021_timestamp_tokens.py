"""Trusted timestamps (RFC 3161) of the ledger's seals and the audit log's head

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-10 10:00:00

One row per piece of evidence to stamp (a sealed day, an audit head), waiting until the
Time-Stamp Authority answers and then holding its token as sent (`archiver/timestamps/`).
Seals made before this revision are stamped by the first run with a TSA configured.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "timestamp_tokens",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("imprint", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("token", sa.LargeBinary(), nullable=True),
        sa.Column("gen_time", sa.DateTime(), nullable=True),
        sa.Column("tsa", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_timestamp_tokens")),
        sa.UniqueConstraint("kind", "key", name=op.f("uq_timestamp_tokens_kind")),
    )
    with op.batch_alter_table("timestamp_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_timestamp_tokens_status"), ["status"], unique=False)


def downgrade() -> None:
    op.drop_table("timestamp_tokens")
