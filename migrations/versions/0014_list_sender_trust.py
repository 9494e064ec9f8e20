"""List trust: a per-list switch back to header-From posting, outbox messages' Message-IDs

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 02:00:00

`mailing_lists.trust_header_from` (off) keeps the old members-only check, which believed
the From header alone, for a list that asks for it. `outbox_messages.message_id` lets a
delivery report (RFC 3464) that comes back without a signed VERP address count only when
it is about a message the outbox sent; messages already in the outbox get theirs here,
read from their own headers, so bounces of mail sent before the upgrade still count.
"""

from collections.abc import Sequence
from email.parser import BytesHeaderParser
from email.policy import compat32

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 500


def upgrade() -> None:
    with op.batch_alter_table("mailing_lists") as batch:
        batch.add_column(
            sa.Column("trust_header_from", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("outbox_messages") as batch:
        batch.add_column(
            sa.Column("message_id", sa.String(length=998), nullable=False, server_default="")
        )
        batch.create_index("ix_outbox_messages_message_id", ["message_id"])
    _backfill_message_ids()


def _backfill_message_ids() -> None:
    """Each outbox message's Message-ID, from its stored headers (the same reading as
    `lists.outbox.message_id_of`, which this migration must not import)."""
    connection = op.get_bind()
    table = sa.table(
        "outbox_messages",
        sa.column("id", sa.BigInteger()),
        sa.column("data", sa.LargeBinary()),
        sa.column("message_id", sa.String()),
    )
    last = 0
    parser = BytesHeaderParser(policy=compat32)
    while True:
        rows = connection.execute(
            sa.select(table.c.id, table.c.data)
            .where(table.c.id > last)
            .order_by(table.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        for row_id, data in rows:
            found = parser.parsebytes(bytes(data or b"")).get("Message-ID", "")
            message_id = " ".join(str(found).split()).strip("<>")[:998]
            if message_id:
                connection.execute(
                    sa.update(table).where(table.c.id == row_id).values(message_id=message_id)
                )
        last = rows[-1][0]


def downgrade() -> None:
    with op.batch_alter_table("outbox_messages") as batch:
        batch.drop_index("ix_outbox_messages_message_id")
        batch.drop_column("message_id")
    with op.batch_alter_table("mailing_lists") as batch:
        batch.drop_column("trust_header_from")
