"""Data subjects' erasure requests, remembered until all of their mail may go

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07 13:00:00

One row per request (`archiver.erasure.models`): the address, who asked and when, whether
mail a hold or a retention policy keeps is still waiting, and the counts of the last run.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "erasure_requests",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.Column("requested_by", sa.String(length=320), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("erased", sa.Integer(), nullable=False),
        sa.Column("held", sa.Integer(), nullable=False),
        sa.Column("retained", sa.Integer(), nullable=False),
        sa.Column("waiting", sa.Integer(), nullable=False),
        sa.Column("last_run_at", sa.DateTime(), nullable=True),
        sa.Column("done_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erasure_requests")),
    )
    with op.batch_alter_table("erasure_requests") as table:
        table.create_index(table.f("ix_erasure_requests_address"), ["address"], unique=False)
        table.create_index(table.f("ix_erasure_requests_status"), ["status"], unique=False)


def downgrade() -> None:
    op.drop_table("erasure_requests")
