"""Grow a PostgreSQL bench archive tenfold by copying it inside the database.

A million generated messages take over an hour and a half to import and index on a
2-core machine. To measure the PostgreSQL search backend at that size, this copies the
archive `tests/bench/search.py --database-url URL --keep DIR` left in URL `--times - 1`
times over, inside PostgreSQL: every message, its address rows, attachments and search
row, with new ids, Message-IDs and threads, the same dates (so each month holds ten times
the mail) and the same blobs (so pages and snippets read real text). The search table's
indexes are dropped first and built again afterwards, as a bulk load should be.

    .venv/bin/python tests/bench/pg_copies.py --database-url postgresql+psycopg://... [--times 10]

Then query the grown archive with the same bench: `search.py --messages 100000
--database-url URL --keep DIR --no-reindex` (its queries name the first copy's mail, and
a word or sender of it now matches ten times as many messages).
"""

from __future__ import annotations

import argparse
import sys
import time

from sqlalchemy import Connection, create_engine, text

# Columns copied as they are; the rest are made anew per copy (see `_copy`).
MESSAGE_COLUMNS = (
    "sha256, size, subject, subject_key, from_address, from_name, date, received_at, "
    "envelope_from, list_id, flags, source, retention_date"
)
SEARCH_COLUMNS = (
    "document, subject, filenames, folders, exact, from_tokens, to_tokens, cc_tokens, "
    "participants, list_id, sender_domain, year, date, size, has_attachment, is_spam, "
    "has_virus, marks"
)


def _copy(connection: Connection, copy: int, offset: int) -> None:
    """Copy number `copy` of the original messages (ids up to `offset`): ids + copy * offset."""
    shift = {"shift": copy * offset, "offset": offset, "tag": f"c{copy}."}
    connection.execute(
        text(
            f"INSERT INTO messages (id, dedupe_key, message_id, thread_id, in_reply_to, "
            f"{MESSAGE_COLUMNS}) "
            "SELECT id + :shift, encode(sha256(convert_to(:tag || dedupe_key, 'UTF8')), 'hex'), "
            ":tag || message_id, left(md5(:tag || thread_id), 24), :tag || in_reply_to, "
            f"{MESSAGE_COLUMNS} FROM messages WHERE id <= :offset"
        ),
        shift,
    )
    connection.execute(
        text(
            "INSERT INTO message_addresses (message_pk, role, address, name) "
            "SELECT message_pk + :shift, role, address, name FROM message_addresses "
            "WHERE message_pk <= :offset"
        ),
        shift,
    )
    connection.execute(
        text(
            "INSERT INTO attachments (message_pk, position, filename, content_type, size, "
            "sha256, has_text) SELECT message_pk + :shift, position, filename, content_type, "
            "size, sha256, has_text FROM attachments WHERE message_pk <= :offset"
        ),
        shift,
    )
    connection.execute(
        text(
            f"INSERT INTO search_documents (message_pk, message_id, {SEARCH_COLUMNS}) "
            f"SELECT message_pk + :shift, :tag || message_id, {SEARCH_COLUMNS} "
            "FROM search_documents WHERE message_pk <= :offset"
        ),
        shift,
    )


def grow(url: str, times: int) -> None:
    """Make the archive at `url` `times` times as large, printing progress."""
    engine = create_engine(url)
    with engine.begin() as connection:
        offset = connection.scalar(text("SELECT max(id) FROM messages")) or 0
        if connection.scalar(text("SELECT count(*) FROM messages")) != offset:
            raise SystemExit("the archive's ids have gaps or copies already: use a fresh one")
        # The parent's index definitions, to drop and build again around the bulk load.
        indexes = connection.execute(
            text(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = "
                "'search_documents' AND indexname NOT LIKE 'pk_%'"
            )
        ).all()
        for name, _definition in indexes:
            connection.execute(text(f'DROP INDEX "{name}"'))
    print(f"{offset:,} messages; {len(indexes)} search indexes dropped", flush=True)
    for copy in range(1, times):
        began = time.monotonic()
        with engine.begin() as connection:
            _copy(connection, copy, offset)
        print(f"  copy {copy}: {time.monotonic() - began:.0f} s", flush=True)
    with engine.begin() as connection:
        connection.execute(text("SELECT setval('messages_id_seq', (SELECT max(id) FROM messages))"))
        for name, definition in indexes:
            began = time.monotonic()
            connection.execute(text("SET LOCAL maintenance_work_mem = '1GB'"))
            # A partitioned table's definition reads "ON ONLY": built here for every month.
            connection.execute(text(definition.replace(" ON ONLY ", " ON ")))
            print(f"  index {name}: {time.monotonic() - began:.0f} s", flush=True)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))
        total = connection.scalar(text("SELECT count(*) FROM messages"))
    print(f"{total:,} messages, vacuumed and analysed", flush=True)
    engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True, help="the bench's PostgreSQL archive")
    parser.add_argument("--times", type=int, default=10, help="how many times as large")
    args = parser.parse_args(argv)
    if args.times < 2:
        parser.error("--times must be at least 2")
    grow(args.database_url, args.times)
    return 0


if __name__ == "__main__":
    sys.exit(main())
