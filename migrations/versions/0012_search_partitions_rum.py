"""Full text search at scale: monthly partitions, RUM ranking, stop words kept (PostgreSQL only)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 23:10:00

`search_documents` becomes a table partitioned by the month of the message date, so that
retention deletes and vacuum touch the few months concerned instead of one ever-growing
heap and its indexes; the rows move over in place (a copy, then the old table is dropped).

The document vector gets a RUM index when the server has the `rum` extension (Debian's
`postgresql-15-rum`): RUM keeps positions and weights in the index and returns rows in rank
order (`<=>`), so a ranked page reads twenty rows, not every match. A server without it, or a
role that may not create it, keeps the GIN index and the ranking that reads every match; the
migration says so in one line and never fails over it.

Text search uses `arsip_english`: PostgreSQL's `english` without its stop word list, so that
"the" and "to be or not to be" are words as they are in the whoosh index. Rows indexed before
this revision lack stop words until `arsip reindex`; everything else still matches and ranks.
"""

import logging
from collections.abc import Sequence

from alembic import op
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")

OLD = "search_documents_unpartitioned"
PK, FK = "pk_search_documents", "fk_search_documents_message_pk_messages"  # as 0002 named them
COLUMNS = (
    "message_pk, document, subject, filenames, exact, from_tokens, to_tokens, cc_tokens, "
    "participants, message_id, list_id, sender_domain, year, date, size, has_attachment, "
    "is_spam, has_virus"
)
GIN_COLUMNS = ("subject", "filenames", "from_tokens", "to_tokens", "cc_tokens", "participants")
BTREE_COLUMNS = ("message_id", "list_id", "date")
FLAGS = ("is_spam", "has_virus")
# Mail dated before this (broken clocks, forged headers) shares one partition.
FIRST_MONTH = "1990-01-01"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite searches with whoosh
    op.execute(
        "CREATE TEXT SEARCH DICTIONARY arsip_english_stem (TEMPLATE = snowball, Language = english)"
    )
    op.execute("CREATE TEXT SEARCH CONFIGURATION arsip_english (COPY = english)")
    op.execute(
        "ALTER TEXT SEARCH CONFIGURATION arsip_english ALTER MAPPING FOR "
        "asciiword, asciihword, hword_asciipart, word, hword, hword_part WITH arsip_english_stem"
    )
    rum = _create_rum()
    for name in (*GIN_COLUMNS, "document", *BTREE_COLUMNS, *FLAGS):
        op.execute(f"DROP INDEX IF EXISTS ix_search_documents_{name}")
    op.execute(f"ALTER TABLE search_documents RENAME TO {OLD}")
    op.execute(f"ALTER TABLE {OLD} RENAME CONSTRAINT {PK} TO {PK}_unpartitioned")
    op.execute(f"ALTER TABLE {OLD} RENAME CONSTRAINT {FK} TO {FK}_unpartitioned")
    op.execute(
        f"CREATE TABLE search_documents (LIKE {OLD} INCLUDING DEFAULTS, "
        f"CONSTRAINT {PK} PRIMARY KEY (message_pk, date), "
        f"CONSTRAINT {FK} FOREIGN KEY (message_pk) "
        "REFERENCES messages (id) ON DELETE CASCADE) PARTITION BY RANGE (date)"
    )
    op.execute(
        "CREATE TABLE search_documents_older PARTITION OF search_documents "
        f"FOR VALUES FROM (MINVALUE) TO ('{FIRST_MONTH}')"
    )
    months = op.get_bind().execute(
        text(
            f"SELECT DISTINCT date_trunc('month', date) FROM {OLD} "
            f"WHERE date >= '{FIRST_MONTH}' ORDER BY 1"
        )
    )
    for (month,) in months:
        end = f"'{month:%Y-%m-%d}'::timestamp + interval '1 month'"
        op.execute(
            f"CREATE TABLE search_documents_{month:y%Ym%m} PARTITION OF search_documents "
            f"FOR VALUES FROM ('{month:%Y-%m-%d}') TO ({end})"
        )
    op.execute(f"INSERT INTO search_documents ({COLUMNS}) SELECT {COLUMNS} FROM {OLD}")
    op.execute(f"DROP TABLE {OLD}")
    # Indexes on the parent are built on every partition, and on each new one as it comes.
    _create_indexes("rum (document rum_tsvector_ops)" if rum else "gin (document)")
    op.execute("ANALYZE search_documents")


def _create_indexes(document_index: str) -> None:
    """The search table's indexes: the document vector's (`USING document_index`), then
    those of the other columns, the same before and after partitioning."""
    op.execute(
        f"CREATE INDEX ix_search_documents_document ON search_documents USING {document_index}"
    )
    for name in GIN_COLUMNS:
        op.execute(
            f"CREATE INDEX ix_search_documents_{name} ON search_documents USING gin ({name})"
        )
    for name in BTREE_COLUMNS:
        op.execute(f"CREATE INDEX ix_search_documents_{name} ON search_documents ({name})")
    for name in FLAGS:
        op.execute(
            f"CREATE INDEX ix_search_documents_{name} ON search_documents (date) WHERE {name}"
        )


def _create_rum() -> bool:
    """Whether the `rum` extension is there (created here when the server has it)."""
    bind = op.get_bind()
    available = bind.scalar(text("SELECT count(*) FROM pg_available_extensions WHERE name = 'rum'"))
    if not available:
        log.warning(
            "the PostgreSQL server has no rum extension (Debian: postgresql-15-rum); full text "
            "search keeps its GIN index and ranks by reading every match"
        )
        return False
    try:
        with bind.begin_nested():
            bind.execute(text("CREATE EXTENSION IF NOT EXISTS rum"))
    except DBAPIError as exc:  # a role without the right to create it: GIN it is
        log.warning(
            "cannot create the rum extension (%s); full text search keeps its GIN index",
            str(exc).splitlines()[0],
        )
        return False
    return True


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"CREATE TABLE {OLD} (LIKE search_documents INCLUDING DEFAULTS)")
    op.execute(f"INSERT INTO {OLD} ({COLUMNS}) SELECT {COLUMNS} FROM search_documents")
    op.execute("DROP TABLE search_documents")
    op.execute(f"ALTER TABLE {OLD} RENAME TO search_documents")
    op.execute(f"ALTER TABLE search_documents ADD CONSTRAINT {PK} PRIMARY KEY (message_pk)")
    op.execute(
        f"ALTER TABLE search_documents ADD CONSTRAINT {FK} FOREIGN KEY (message_pk) "
        "REFERENCES messages (id) ON DELETE CASCADE"
    )
    _create_indexes("gin (document)")
    op.execute("DROP TEXT SEARCH CONFIGURATION arsip_english")
    op.execute("DROP TEXT SEARCH DICTIONARY arsip_english_stem")
