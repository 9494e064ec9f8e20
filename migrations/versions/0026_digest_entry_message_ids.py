"""The Message-ID of each post waiting for a digest, so a deletion finds its copies at once

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-07 15:20:00

A message the archive deletes (a sweep, an erasure) takes its copies waiting in digests
with it (`lists.digesting.forget_posts`). With the Message-ID the archive gives each
post beside it, a deletion reads only the posts that may be copies, instead of the
headers of every post waiting. Posts kept before have none and are read as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("list_digest_entries") as table:
        table.add_column(sa.Column("message_id", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("list_digest_entries") as table:
        table.drop_column("message_id")
