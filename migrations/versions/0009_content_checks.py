"""Content checks: spamd/clamd verdicts of archived messages and held posts, per-list thresholds

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 14:00:00

Messages archived before this revision have no verdict: they were never checked. Spool
rows gain a priority, so workers take a list's mail before a backlog of journal copies
(content checks make each message cost a spamd scan).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "content_checks",
        sa.Column(
            "message_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("checked_at", sa.DateTime(), nullable=False),
        sa.Column("spam_score", sa.Float(), nullable=True),
        sa.Column("spam_threshold", sa.Float(), nullable=True),
        sa.Column("spam_rules", sa.Text(), nullable=False),
        sa.Column("spam", sa.Boolean(), nullable=False),
        sa.Column("virus", sa.String(length=255), nullable=True),
        sa.Column("unchecked", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_pk"],
            ["messages.id"],
            name=op.f("fk_content_checks_message_pk_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("message_pk", name=op.f("pk_content_checks")),
    )
    op.create_index(op.f("ix_content_checks_spam"), "content_checks", ["spam"])
    op.create_index(op.f("ix_content_checks_virus"), "content_checks", ["virus"])
    with op.batch_alter_table("mailing_lists") as batch:
        batch.add_column(
            sa.Column("spam_hold_score", sa.Float(), nullable=False, server_default="5.0")
        )
        batch.add_column(
            sa.Column("spam_discard_score", sa.Float(), nullable=False, server_default="15.0")
        )
        batch.add_column(
            sa.Column("unchecked_posts", sa.String(length=8), nullable=False, server_default="hold")
        )
    with op.batch_alter_table("list_held_messages") as batch:
        batch.add_column(sa.Column("verdict", sa.JSON(), nullable=True))
    with op.batch_alter_table("spool") as batch:
        batch.add_column(
            sa.Column("priority", sa.SmallInteger(), nullable=False, server_default="1")
        )
        batch.create_index("ix_spool_priority_id", ["priority", "id"])


def downgrade() -> None:
    with op.batch_alter_table("spool") as batch:
        batch.drop_index("ix_spool_priority_id")
        batch.drop_column("priority")
    with op.batch_alter_table("list_held_messages") as batch:
        batch.drop_column("verdict")
    with op.batch_alter_table("mailing_lists") as batch:
        batch.drop_column("unchecked_posts")
        batch.drop_column("spam_discard_score")
        batch.drop_column("spam_hold_score")
    op.drop_index(op.f("ix_content_checks_virus"), table_name="content_checks")
    op.drop_index(op.f("ix_content_checks_spam"), table_name="content_checks")
    op.drop_table("content_checks")
