"""Productions: each series' next control number, and each production run

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-12 10:00:00

A series (a case, or `subject:ADDRESS`) hands out control numbers that run on from one
production to the next; a production reserves its range when it starts, so a number is
never given twice, even after a run that was interrupted and abandoned.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "production_series",
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("next_number", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_production_series")),
    )
    op.create_table(
        "productions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("series", sa.String(length=400), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("first_number", sa.BigInteger(), nullable=False),
        sa.Column("last_number", sa.BigInteger(), nullable=False),
        sa.Column("documents", sa.Integer(), nullable=False),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("output", sa.Text(), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("dedupe", sa.String(length=16), nullable=False),
        sa.Column("plan_sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("manifest_sha256", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["series"],
            ["production_series.key"],
            name=op.f("fk_productions_series_production_series"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_productions")),
    )
    with op.batch_alter_table("productions") as table:
        table.create_index(table.f("ix_productions_output"), ["output"], unique=False)
        table.create_index(table.f("ix_productions_series"), ["series"], unique=False)


def downgrade() -> None:
    op.drop_table("productions")
    op.drop_table("production_series")
