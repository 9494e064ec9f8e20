"""Why a post is held, kept so that each moderator reads it in their own language

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-09 10:00:00

`reason` keeps the reason in English, as `arsip lists held` prints it; `reason_text` holds
the same as its English template and values (`archiver.languages.Text.as_json`), which
the held-posts page says in the page's language. Posts held before have none and show
their English reason as it is.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("list_held_messages") as table:
        table.add_column(sa.Column("reason_text", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("list_held_messages") as table:
        table.drop_column("reason_text")
