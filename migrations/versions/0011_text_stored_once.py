"""Message text stored once: in the raw blob, no longer in the database too

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 20:00:00

`messages.body_text` and `attachments.text` held a second copy of every message's text
beside its compressed raw blob; search, snippets and pages now derive the text from the
blob (`archiver.texts`), so both columns go and nothing is lost. Attachments keep one flag,
`has_text`, taken from the old column, for `arsip show`. The search index is unchanged:
it never stored the text, and needs no `arsip reindex`.

SQLite drops the columns in place with `ALTER TABLE ... DROP COLUMN` (SQLite 3.35 or
newer). A batch "copy and rename" would drop the old `messages` table, and with foreign
keys enforced that deletes every row that refers to it. The freed pages stay inside the
database file until `arsip db compact` hands them back to the file system.

A downgrade puts the columns back; given a blob store (`config.attributes["store"]`, as
`archiver.migrate.downgrade` passes it) it fills them from the blobs, otherwise they stay
empty.
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger(__name__)
DROPPED = (("messages", "body_text"), ("attachments", "text"))
REFILL_BATCH = 500


def upgrade() -> None:
    bind = op.get_bind()
    op.add_column(
        "attachments",
        sa.Column("has_text", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.execute("UPDATE attachments SET has_text = (text IS NOT NULL)")
    if bind.dialect.name == "sqlite":
        version = tuple(
            int(part)
            for part in bind.exec_driver_sql("SELECT sqlite_version()").scalar_one().split(".")
        )
        if version < (3, 35):
            raise RuntimeError(
                "dropping the stored text needs SQLite 3.35 or newer (this Python has "
                f"{'.'.join(map(str, version))})"
            )
        for table, column in DROPPED:
            op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    else:
        for table, column in DROPPED:
            op.drop_column(table, column)


def downgrade() -> None:
    op.add_column("messages", sa.Column("body_text", sa.Text(), nullable=False, server_default=""))
    op.add_column("attachments", sa.Column("text", sa.Text(), nullable=True))
    store = context.config.attributes.get("store")
    if store is None:
        log.warning("no blob store given: message and attachment text stay empty")
    else:
        _refill(store)
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE attachments DROP COLUMN has_text")
    else:
        op.drop_column("attachments", "has_text")


def _refill(store: object) -> None:
    """Put each message's text back into the columns, from its blob."""
    from archiver.texts import message_text

    bind = op.get_bind()
    last = 0
    while True:
        rows = bind.execute(
            sa.text("SELECT id, sha256 FROM messages WHERE id > :last ORDER BY id LIMIT :n"),
            {"last": last, "n": REFILL_BATCH},
        ).all()
        if not rows:
            return
        for pk, sha256 in rows:
            text = message_text(store, sha256)  # type: ignore[arg-type]
            bind.execute(
                sa.text("UPDATE messages SET body_text = :body WHERE id = :pk"),
                {"body": text.body, "pk": pk},
            )
            positions = bind.execute(
                sa.text("SELECT id, position FROM attachments WHERE message_pk = :pk"),
                {"pk": pk},
            ).all()
            for attachment_id, position in positions:
                part = text.attachments[position] if position < len(text.attachments) else None
                bind.execute(
                    sa.text("UPDATE attachments SET text = :text WHERE id = :id"),
                    {"text": part, "id": attachment_id},
                )
        last = rows[-1][0]
