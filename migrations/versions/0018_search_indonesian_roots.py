"""Indonesian roots in the search vectors (PostgreSQL only)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 10:00:00

Search matches the Indonesian forms of a word (`uang` finds `keuangan`). The roots come
from Python (archiver/search/indonesian.py: Snowball's Indonesian stemmer, with English
words kept whole, which PostgreSQL's own `indonesian` configuration cannot do); this
function puts them into a text's vector at the positions of their words, so that phrases
hold across forms: `arsip_search_vector(text, words, lexemes)` is the text's vector in
`arsip_english` plus, wherever one of `words` occurs, the matching one of `lexemes` (the
indexer passes `'id <root>'`).

The positions come from the `simple` configuration, which reads the text with the same
parser and, like `arsip_english` (no stop words), gives every token a position, so they are
the English vector's. The two are joined through their text forms, which keeps positions
as they are (`||` would shift the second's).

Rows indexed before this revision have no roots until `arsip reindex`; they still match
every English form, and their exact words in Indonesian.
"""

import logging
from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite searches with whoosh, which finds the roots when searching
    op.execute(
        """
        CREATE FUNCTION arsip_search_vector(body text, words text[], lexemes text[])
        RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
            SELECT CASE WHEN cardinality(words) = 0 THEN to_tsvector('arsip_english', body)
            ELSE (to_tsvector('arsip_english', body)::text || ' ' || coalesce((
                SELECT string_agg(
                    quote_literal(m.lexeme) || ':' || array_to_string(v.positions, ','), ' ')
                FROM unnest(to_tsvector('simple', body)) AS v
                JOIN unnest(words, lexemes) AS m(word, lexeme) ON m.word = v.lexeme
            ), ''))::tsvector END
        $$
        """
    )
    if op.get_bind().exec_driver_sql("SELECT EXISTS (SELECT FROM search_documents)").scalar():
        log.warning(
            "search: Indonesian forms of words (uang -> keuangan) are found in mail indexed "
            "from now on; run `arsip reindex` once to add them for the mail archived so far"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION arsip_search_vector(text, text[], text[])")
