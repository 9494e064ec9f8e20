"""The language an account reads the web UI in, and the language a list writes its mail in

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 11:00:00

Both are language codes Arsip has a catalogue for (`en`, `id`). An account without one
follows its browser's Accept-Language, then `ARSIP_DEFAULT_LANGUAGE`; a list without one
writes in `ARSIP_DEFAULT_LANGUAGE`. Empty columns: existing accounts and lists keep today's
behaviour until someone chooses.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as table:
        table.add_column(sa.Column("language", sa.String(8), nullable=True))
    with op.batch_alter_table("mailing_lists") as table:
        table.add_column(sa.Column("language", sa.String(8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mailing_lists") as table:
        table.drop_column("language")
    with op.batch_alter_table("users") as table:
        table.drop_column("language")
