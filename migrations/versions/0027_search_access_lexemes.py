"""Who may read a message, inside its document vector (PostgreSQL only)

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-07 21:30:00

A person's search asked two indexes for its rows: the document vector's for its words and
the `participants` GIN index for the mail they may read. PostgreSQL ANDs the two bitmaps,
so each index read every entry of its side: a common word's hundreds of thousands, or a
phrase of two common words checked in every message holding both. Each row's vector now
also holds its access lexemes, `arsip_access_vector(participants, list_id)`: `'p <address>'`
for each address whose role grants access and `'l <list id>'` for its list. The space in
them is in no word PostgreSQL's parser makes, so no search for words meets them. The
viewer filter is a tsquery over them (`postgres_index._visibility`), and the one index
walks the person's entries beside the words', skipping through the longer lists by the
shorter as Xapian does with its boolean filter terms.

The rows already indexed get theirs here. The vector's index is dropped first and built
again after: rewriting the rows under it updates the index row by row, some twenty times
slower (83 s against 5 s for a month of 28,000 messages). The table's dead row versions are
left to autovacuum.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_search_documents_document"  # as 0012 made it: RUM where the server has it
# Each lexeme at one position, written as tsvector syntax reads it (a quote doubled, a
# backslash escaped): RUM checks every match of a lexeme without a position again on its
# row, reading the row's whole vector (10 ms instead of 2 for the 1,400 messages one
# person has in a month).
ACCESS_VECTOR = r"""
    CREATE FUNCTION arsip_access_vector(participants text[], list_id text)
    RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT coalesce(string_agg(
            '''' || replace(replace(lexeme, '\', '\\'), '''', '''''') || ''':1', ' '
        ), '')::tsvector
        FROM unnest(arsip_access_lexemes(participants, list_id)) AS lexeme
    $$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite searches with whoosh
    op.execute(
        """
        CREATE FUNCTION arsip_access_lexemes(participants text[], list_id text)
        RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
            SELECT ARRAY(SELECT 'p ' || address FROM unnest(participants) AS address)
                || CASE WHEN list_id IS NULL THEN '{}'::text[] ELSE ARRAY['l ' || list_id] END
        $$
        """
    )
    op.get_bind().exec_driver_sql(ACCESS_VECTOR)  # as written: `:1` is no parameter
    _rewrite("document || arsip_access_vector(participants, list_id)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _rewrite("ts_delete(document, arsip_access_lexemes(participants, list_id))")
    op.execute("DROP FUNCTION arsip_access_vector(text[], text)")
    op.execute("DROP FUNCTION arsip_access_lexemes(text[], text)")


def _rewrite(document: str) -> None:
    """Set every row's vector to `document`, with the vector's index (RUM or GIN, as the
    server had it) dropped meanwhile and built again after."""
    method = (
        op.get_bind()
        .exec_driver_sql(
            "SELECT am.amname FROM pg_class AS c JOIN pg_am AS am ON am.oid = c.relam "
            f"WHERE c.relname = '{INDEX}'"
        )
        .scalar()
    )
    op.execute(f"DROP INDEX {INDEX}")
    op.execute(f"UPDATE search_documents SET document = {document}")
    using = "rum (document rum_tsvector_ops)" if method == "rum" else "gin (document)"
    op.execute(f"CREATE INDEX {INDEX} ON search_documents USING {using}")
