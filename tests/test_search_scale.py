"""The PostgreSQL search backend past one machine: the same words as whoosh (stop words
too), estimated totals past ten thousand matches, monthly partitions, RUM ranking with a
GIN fall-back, in-place migration of an existing table, and searches on a streaming replica."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from archiver import migrate
from archiver.archive import RawMessage
from archiver.core import Core, build_core
from archiver.models import Message
from archiver.search import postgres_index
from archiver.search.documents import load_documents
from archiver.search.indexer import Indexer
from archiver.search.postgres_index import PostgresBackend
from archiver.search.service import SearchPage, search
from archiver.search.viewer import Viewer
from tests.support import (
    eventually,
    free_ports,
    missing,
    postgres_database,
    run_arsip,
    service_env,
    settings_from,
)
from tests.test_search import ALICE, BOB, CAROL, message

REPLICA_URL = os.environ.get("ARSIP_TEST_POSTGRES_REPLICA_URL")

HAMLET = message("hamlet@example.com", "A question", "To be, or not to be: that is the question.")
YEAR_END = message("year-end@example.com", "Closing", "See you at the end of the year.")
NEAR_END = message("near-end@example.com", "Soon", "The end is near; the year is over.")
A_DATE = message(
    "a-date@example.com", "Plans", "Let us plan for a date in June.", sender="dana@example.com"
)
FOR_DATE = message(
    "for-date@example.com", "Sorting", "Sorted for date, then by sender.", sender="eko@example.com"
)
MONTHS = [
    message(
        f"month{n}@example.com",
        f"Monthly report {n}",
        "The monthly report, as every month.",
        date=f"Mon, 02 {month} 2025 10:00:00 +0000",
    )
    for n, month in enumerate(("Jan", "Feb", "Mar", "Apr", "May"))
]


def archive_and_index(core: Core, messages: list[bytes]) -> None:
    """Archive `messages` and index them, as the service's worker and indexer do."""
    with core.sessions.begin() as session:
        core.archive.archive_batch(
            session, [RawMessage(data, "", [], datetime.now(UTC), "import") for data in messages]
        )
    backend = core.search_backend()
    Indexer(core.sessions, backend, core.store).run_once()
    backend.close()


def found(core: Core, text: str, viewer: Viewer | None = None, **options: object) -> SearchPage:
    """What `viewer` (an administrator unless given) finds for `text` through the search
    service."""
    backend = core.search_backend()
    try:
        with core.sessions() as session:
            return search(
                session,
                backend,
                text,
                viewer or Viewer.administrator(),
                store=core.store,
                **options,
            )
    finally:
        backend.close()


def message_ids(page: SearchPage) -> list[str]:
    return sorted(result.message_id for result in page.results)


def postgres_only(core: Core) -> None:
    if core.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("the", ["hamlet@example.com", "near-end@example.com", "year-end@example.com"]),
        ("to be", ["hamlet@example.com"]),
        ('"to be or not to be"', ["hamlet@example.com"]),
        ('"end of the year"', ["year-end@example.com"]),
        ('"the end"', ["near-end@example.com", "year-end@example.com"]),
        # A word of one character is not indexed, and the words around it are neighbours.
        ('"for date"', ["a-date@example.com", "for-date@example.com"]),
        ('"for a date"', ["a-date@example.com", "for-date@example.com"]),
        ('"plan for date"', ["a-date@example.com"]),
    ],
)
def test_stop_words_find_the_same_mail_on_whoosh_and_postgres(
    core: Core, query: str, expected: list[str]
) -> None:
    # SQLite runs this with whoosh, PostgreSQL with its own full text search.
    archive_and_index(core, [HAMLET, YEAR_END, NEAR_END, A_DATE, FOR_DATE])
    page = found(core, query)
    assert message_ids(page) == expected
    assert page.total == len(expected) and page.total_exact


def test_past_the_limit_the_total_is_an_estimate_until_the_exact_count_is_asked(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ten thousand messages would make a slow test; the limit is lowered instead.
    monkeypatch.setattr(postgres_index, "EXACT_TOTAL_LIMIT", 2)
    archive_and_index(core, MONTHS)
    estimated = found(core, "report", limit=3)
    exact = found(core, "report", limit=3, exact_total=True)
    assert exact.total == 5 and exact.total_exact
    assert exact.facets["year"] == {"2025": 5}
    assert len(estimated.results) == 3
    if core.settings.search_backend == "whoosh":
        assert estimated.total == 5 and estimated.total_exact  # whoosh counts every match
    else:
        assert not estimated.total_exact and estimated.total >= 3
        assert estimated.as_json()["total_exact"] is False
    # A first page with room for every match holds them all: that is the exact total.
    whole = found(core, "report", limit=10)
    assert whole.total == 5 and whole.total_exact
    assert whole.facets["year"] == {"2025": 5}
    assert whole.facets["sender_domain"] == exact.facets["sender_domain"]


@pytest.fixture
def months_as_a_million(core: Core, monkeypatch: pytest.MonkeyPatch) -> Core:
    """MONTHS archived and indexed, with PostgreSQL's phrase window made so small that
    five messages stand for a million: at a million messages a phrase of two common words
    has hundreds of thousands of candidates to check; here a window of one estimated
    candidate stands for that, and a page of two with no candidates beyond it to rerank
    for more than a month's mail."""
    monkeypatch.setattr(postgres_index, "PHRASE_WINDOW", 1)
    monkeypatch.setattr(postgres_index, "PHRASE_SAMPLE", 1)
    monkeypatch.setattr(postgres_index, "RERANK", 0)
    archive_and_index(core, MONTHS)
    return core


def test_a_phrase_of_common_words_is_counted_in_its_newest_months_and_scaled(
    months_as_a_million: Core,
) -> None:
    core = months_as_a_million
    estimated = found(core, '"monthly report"', limit=2)
    exact = found(core, '"monthly report"', limit=2, exact_total=True)
    assert exact.total == 5 and exact.total_exact
    assert len(estimated.results) == 2
    if core.settings.search_backend == "whoosh":
        assert estimated.total == 5 and estimated.total_exact
    else:
        assert not estimated.total_exact and estimated.total >= 1
        assert estimated.facets["year"].keys() == {"2025"}


def test_a_persons_phrase_of_common_words_is_counted_in_its_newest_months_too(
    months_as_a_million: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As above, for someone whose own mail, as at a million messages, is too much to check
    # the phrase on row by row (here: any mail at all).
    core = months_as_a_million
    monkeypatch.setattr(postgres_index, "ROW_CHECK_LIMIT", 0)
    bob, carol = Viewer.person(BOB), Viewer.person(CAROL)
    estimated = found(core, '"monthly report"', bob, limit=2)
    assert len(estimated.results) == 2
    if core.settings.search_backend == "postgres":
        assert not estimated.total_exact and estimated.total >= 1
    whole = found(core, '"monthly report"', bob, limit=10)
    assert whole.total == 5 and whole.total_exact and len(whole.results) == 5
    nothing = found(core, '"monthly report"', carol)
    assert nothing.total == 0 and nothing.total_exact and not nothing.results


def test_a_word_past_the_limit_is_counted_in_its_newest_months_and_scaled(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reading ten thousand of a person's matches only to learn there are more is what a
    # common word cost at a million messages; here a limit of two and a sample of one
    # estimated match (each partition is estimated at one) stand for that.
    postgres_only(core)
    monkeypatch.setattr(postgres_index, "EXACT_TOTAL_LIMIT", 2)
    monkeypatch.setattr(postgres_index, "SAMPLED_TOTAL", 1)
    monkeypatch.setattr(postgres_index, "COUNT_SAMPLE", 1)
    monkeypatch.setattr(postgres_index, "PHRASE_SAMPLE", 1)
    archive_and_index(core, MONTHS)
    for viewer in (Viewer.administrator(), Viewer.person(BOB)):
        estimated = found(core, "report", viewer, limit=3)
        assert len(estimated.results) == 3
        assert not estimated.total_exact and estimated.total >= 1
        assert estimated.facets["year"].keys() == {"2025"}
        exact = found(core, "report", viewer, limit=3, exact_total=True)
        assert exact.total == 5 and exact.total_exact


def test_who_may_read_a_message_is_matched_whatever_their_address_holds(core: Core) -> None:
    # The viewer filter is a query over lexemes made of addresses (PostgreSQL): quotes and
    # query syntax in an address are part of it, never a way into someone else's mail.
    archive_and_index(
        core,
        [
            message("obrien@example.com", "Hello", "A note for you.", to="o'brien@example.com"),
            message("bob@example.com", "Hello", "A note for Bob."),
        ],
    )
    obrien = Viewer.person("o'brien@example.com")
    assert message_ids(found(core, "note", obrien)) == ["obrien@example.com"]
    assert message_ids(found(core, "from:alice@example.com", obrien)) == ["obrien@example.com"]
    for address in ["x' | 'p bob@example.com", "x'' | ''p bob@example.com", "x\\' | 'p bob@"]:
        assert found(core, "note", Viewer.person(address)).results == []


def test_upgrading_to_0027_puts_who_may_read_into_the_vectors_already_written(
    core: Core,
) -> None:
    postgres_only(core)
    archive_and_index(core, [HAMLET, *MONTHS])
    bob = Viewer.person(BOB)
    readable = "SELECT count(*) FROM search_documents WHERE document @@ $$'p bob@example.com'$$"

    def rows_bob_may_read() -> int:
        with core.engine.connect() as connection:
            return int(connection.scalar(text(readable)) or 0)

    assert rows_bob_may_read() == 6
    migrate.downgrade(core.engine, "0026")  # vectors as the indexer of 0026 wrote them
    assert rows_bob_may_read() == 0
    migrate.upgrade(core.engine)
    assert rows_bob_may_read() == 6
    assert message_ids(found(core, "question", bob)) == ["hamlet@example.com"]
    assert found(core, "report", bob).total == 5
    assert found(core, "report", Viewer.person(CAROL)).total == 0


@pytest.mark.parametrize("row_check_limit", [10**9, 0], ids=["on-the-rows", "in-the-index"])
def test_a_phrase_with_a_sender_finds_the_same_mail_however_it_is_checked(
    core: Core, monkeypatch: pytest.MonkeyPatch, row_check_limit: int
) -> None:
    # Where a sender leaves few rows, PostgreSQL checks the phrase on them, not in the index.
    monkeypatch.setattr(postgres_index, "ROW_CHECK_LIMIT", row_check_limit)
    archive_and_index(core, [HAMLET, YEAR_END, NEAR_END, A_DATE, FOR_DATE])
    for query, expected in [
        ('from:dana@example.com "for date"', ["a-date@example.com"]),
        ('from:eko@example.com "for date" sorted', ["for-date@example.com"]),
        (f'from:{ALICE} "for date"', []),
        (f'from:{ALICE} "end of the year"', ["year-end@example.com"]),
    ]:
        page = found(core, query)
        assert message_ids(page) == expected, query
        assert page.total == len(expected) and page.total_exact


def test_each_month_of_mail_has_its_own_partition(core: Core) -> None:
    postgres_only(core)
    archive_and_index(core, MONTHS)
    with core.engine.connect() as connection:
        partitions = dict(
            connection.execute(
                text(
                    "SELECT c.relname, count(d.*) FROM pg_inherits AS i "
                    "JOIN pg_class AS c ON c.oid = i.inhrelid "
                    "LEFT JOIN search_documents AS d ON d.tableoid = c.oid "
                    "WHERE i.inhparent = 'search_documents'::regclass GROUP BY c.relname"
                )
            ).all()
        )
    for month in range(1, 6):
        assert partitions[f"search_documents_y2025m{month:02d}"] == 1
    # Indexing the same mail again replaces its rows, in the same partitions.
    backend = core.search_backend()
    with core.sessions() as session:
        pks = list(session.scalars(select(Message.id)))
        documents = load_documents(session, core.store, pks)
    backend.index(documents)
    backend.close()
    assert found(core, "monthly").total == 5
    assert message_ids(found(core, "after:2025-03-01 before:2025-04-01")) == ["month2@example.com"]


def test_ranking_falls_back_to_gin_without_rum(
    core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    postgres_only(core)
    archive_and_index(core, [HAMLET, YEAR_END, NEAR_END, *MONTHS])
    with_rum = [r.message_id for r in found(core, "the end").results]
    with core.engine.begin() as connection:
        connection.execute(text("DROP INDEX ix_search_documents_document"))
        connection.execute(
            text(
                "CREATE INDEX ix_search_documents_document ON search_documents USING gin (document)"
            )
        )
    with caplog.at_level(logging.INFO, logger="archiver.search.postgres_index"):
        with_gin = [r.message_id for r in found(core, "the end").results]
    assert with_gin == with_rum
    assert "ranks without RUM" in caplog.text


def test_an_existing_search_table_moves_into_partitions_in_place(tmp_path: Path) -> None:
    with postgres_database() as url:
        core = build_core(settings_from(service_env(tmp_path / "var", url)))
        try:
            migrate.upgrade(core.engine)
            with core.sessions.begin() as session:
                core.archive.archive_batch(
                    session,
                    [
                        RawMessage(data, "", [], datetime.now(UTC), "import")
                        for data in [*MONTHS, YEAR_END]
                    ],
                )
            migrate.downgrade(core.engine, "0011")  # an archive as revision 0011 left it
            with core.engine.begin() as connection:
                # Rows as the backend of revision 0011 wrote them (english, stop words dropped).
                connection.execute(
                    text(
                        "INSERT INTO search_documents (message_pk, document, subject, filenames, "
                        "from_tokens, to_tokens, cc_tokens, participants, message_id, "
                        "sender_domain, year, date, size, has_attachment) "
                        "SELECT id, to_tsvector('english', subject), to_tsvector('english', "
                        "subject), ''::tsvector, '{}', '{}', '{}', ARRAY[from_address], "
                        "message_id, 'example.com', extract(year FROM date), date, 1, false "
                        "FROM messages"
                    )
                )
            migrate.upgrade(core.engine)
            assert message_ids(found(core, "monthly")) == [
                f"month{n}@example.com" for n in range(5)
            ]
            assert message_ids(found(core, "closing")) == ["year-end@example.com"]
            with core.engine.connect() as connection:
                partitioned = connection.scalar(
                    text(
                        "SELECT count(*) FROM pg_partitioned_table WHERE partrelid = "
                        "'search_documents'::regclass"
                    )
                )
                months = connection.scalar(
                    text(
                        "SELECT count(*) FROM pg_inherits WHERE inhparent = "
                        "'search_documents'::regclass"
                    )
                )
            assert partitioned == 1
            assert months >= 6  # five months of 2025, February 2026, and the older mail
        finally:
            core.engine.dispose()


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[tuple[Core, str]]:
    """A core whose searches go to the streaming replica `tests/with-postgres.sh` started,
    and the replica's URL for the database of this test."""
    if not REPLICA_URL:
        missing("ARSIP_TEST_POSTGRES_REPLICA_URL is not set (tests/with-postgres.sh sets it)")
    with postgres_database() as url:
        replica = make_url(REPLICA_URL).set(database=make_url(url).database)
        replica_url = replica.render_as_string(hide_password=False)
        env = service_env(tmp_path / "var", url, ARSIP_DATABASE_REPLICA_URL=replica_url)
        core = build_core(settings_from(env))
        migrate.upgrade(core.engine)
        caught_up = _replayed(core.engine, replica_url)
        eventually(caught_up, 30, "the replica to have replayed the migrations")
        try:
            yield core, replica_url
        finally:
            core.engine.dispose()
            if core.replica_engine is not None:
                core.replica_engine.dispose()


def test_searches_are_served_by_the_replica_and_new_mail_reaches_it(
    replicated: tuple[Core, str],
) -> None:
    core, replica_url = replicated
    archive_and_index(core, [YEAR_END])
    eventually(
        lambda: found(core, "closing").total == 1, 30, "the replica to have the first message"
    )
    replica = create_engine(replica_url, isolation_level="AUTOCOMMIT")
    try:
        with replica.connect() as connection:
            assert connection.scalar(text("SELECT pg_is_in_recovery()"))
            connection.execute(text("SELECT pg_wal_replay_pause()"))
        try:
            archive_and_index(core, [HAMLET])
            # The primary has it; the paused replica, which answers searches, not yet.
            assert PostgresBackend(core.engine).matching(None) and (
                len(PostgresBackend(core.engine).matching(None)) == 2
            )
            assert found(core, "question").total == 0
        finally:
            with replica.connect() as connection:
                connection.execute(text("SELECT pg_wal_replay_resume()"))
        eventually(lambda: found(core, "question").total == 1, 30, "new mail on the replica")
    finally:
        replica.dispose()


def test_a_search_the_replica_cancels_to_replay_the_primary_is_answered_by_the_primary(
    replicated: tuple[Core, str], caplog: pytest.LogCaptureFixture
) -> None:
    # What a new month's partition or retention dropping an empty one does to a search on
    # the replica, made certain: the primary locks a partition, then the whole table, and
    # the replica, replaying the second lock behind a search waiting for the first, cancels
    # the search as a deadlock.
    core, replica_url = replicated
    archive_and_index(core, [YEAR_END])
    eventually(_replayed(core.engine, replica_url), 30, "the replica to have the message")
    replica = create_engine(replica_url, isolation_level="AUTOCOMMIT")
    with core.engine.connect() as primary:
        partition = primary.scalar(text("SELECT tableoid::regclass::text FROM search_documents"))
        primary.rollback()
        lock = primary.begin()
        primary.execute(text(f"LOCK TABLE ONLY {partition} IN ACCESS EXCLUSIVE MODE"))
        _flush_wal(core.engine)
        eventually(lambda: _locks(replica, partition, granted=True), 30, "the replayed lock")
        answer: list[SearchPage] = []
        with caplog.at_level(logging.INFO, logger="archiver.search.postgres_index"):
            searching = threading.Thread(target=lambda: answer.append(found(core, "closing")))
            searching.start()
            try:
                eventually(lambda: _locks(replica, partition, granted=False), 30, "the search")
                primary.execute(text("LOCK TABLE ONLY search_documents IN ACCESS EXCLUSIVE MODE"))
                _flush_wal(core.engine)
                # Cancelled on the replica, the search waits for the table on the primary.
                waiting = eventually(
                    lambda: _locks(core.engine, "search_documents", granted=False),
                    60,
                    "the search to be asked of the primary",
                )
            finally:
                lock.rollback()
                searching.join(60)
    replica.dispose()
    assert waiting and [message_ids(page) for page in answer] == [["year-end@example.com"]]
    assert any("search cancelled on the replica" in r.getMessage() for r in caplog.records)


def _flush_wal(primary: Engine) -> None:
    """Send what the primary has written to the replica: a commit flushes the WAL."""
    with primary.connect() as connection:
        connection.execute(text("SELECT txid_current()"))
        connection.commit()


def _locks(engine: Engine, table: str, granted: bool) -> int:
    """How many locks on `table` the server at `engine` holds (or has asked for)."""
    with engine.connect() as connection:
        return int(
            connection.scalar(
                text(
                    "SELECT count(*) FROM pg_locks"
                    " WHERE relation = CAST(:table AS regclass) AND granted = :granted"
                ),
                {"table": table, "granted": granted},
            )
        )


def test_an_unreachable_replica_leaves_searches_to_the_primary_with_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with postgres_database() as url:
        (closed,) = free_ports(1)  # nobody listens there
        replica = make_url(url).set(host="127.0.0.1", port=closed)
        env = service_env(
            tmp_path / "var",
            url,
            ARSIP_DATABASE_REPLICA_URL=replica.render_as_string(hide_password=False),
        )
        core = build_core(settings_from(env))
        migrate.upgrade(core.engine)
        try:
            archive_and_index(core, [YEAR_END])
            with caplog.at_level(logging.WARNING, logger="archiver.search.postgres_index"):
                backend = core.search_backend()
                with core.sessions() as session:
                    for _ in range(3):
                        page = search(
                            session, backend, "closing", Viewer.administrator(), store=core.store
                        )
                        assert message_ids(page) == ["year-end@example.com"]
            lines = [r for r in caplog.records if "replica unreachable" in r.getMessage()]
            assert len(lines) == 1 and lines[0].exc_info is None
        finally:
            core.engine.dispose()


def _replayed(primary: Engine, url: str) -> Callable[[], bool]:
    """A check that the replica at `url` has replayed all the primary has written until now.

    Waiting for the schema alone is not enough: a search that reads the tables while the
    replica still replays the rest of the migrations' locks is cancelled as a deadlock.
    """
    with primary.connect() as connection:
        written = connection.scalar(text("SELECT pg_current_wal_lsn()"))

    def check() -> bool:
        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                replayed = "pg_last_wal_replay_lsn()"
                behind = connection.scalar(
                    text(f"SELECT pg_wal_lsn_diff(CAST(:written AS pg_lsn), {replayed}) > 0"),
                    {"written": written},
                )
                return behind is False
        except OperationalError:  # the database itself is not there yet
            return False
        finally:
            engine.dispose()

    return check


def test_a_word_in_most_messages_ranks_its_newest_matches_and_counts_them_all(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    postgres_only(core)
    best = message(
        "best@example.com",
        "Monthly, monthly, monthly",
        "Monthly figures, monthly.",
        date="Mon, 01 Jan 2024 10:00:00 +0000",
    )
    archive_and_index(core, [best, *MONTHS])
    assert found(core, "monthly").results[0].message_id == "best@example.com"
    # Twenty thousand messages would make a slow test; the window is made small instead:
    # the page ranks the newest four months' matches (each partition is estimated at one).
    monkeypatch.setattr(postgres_index, "RANK_WINDOW", 2)
    monkeypatch.setattr(postgres_index, "RERANK", 1)
    first = found(core, "monthly", limit=1)
    assert first.total == 6
    assert message_ids(first) != ["best@example.com"]
    # A page past the window still has its results: the window grows with the page.
    assert len(found(core, "monthly", limit=1, offset=5).results) == 1


def test_a_phrase_missing_from_its_newest_months_is_ranked_and_counted_in_one_pass(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The newest months hold the phrase's words but not the phrase: the ranking window
    # finds nothing, and every match is ranked, counted and faceted in one pass instead.
    postgres_only(core)
    apart = [
        message(
            f"apart{n}@example.com",
            "Report",
            "A report, though not a monthly one.",
            date=f"Mon, 02 {month} 2025 10:00:00 +0000",
        )
        for n, month in enumerate(("Jun", "Jul", "Aug", "Sep"))
    ]
    archive_and_index(core, [*MONTHS, *apart])
    monkeypatch.setattr(postgres_index, "RANK_WINDOW", 2)  # the newest four months
    monkeypatch.setattr(postgres_index, "RERANK", 1)
    first = found(core, '"monthly report"', limit=1)
    assert first.total == 5 and first.total_exact
    assert first.facets["year"] == {"2025": 5}
    assert first.facets["sender_domain"] == {"example.com": 5}
    assert len(first.results) == 1 and first.results[0].message_id.startswith("month")
    pages = [found(core, '"monthly report"', limit=1, offset=n).results for n in range(6)]
    assert sorted(page[0].message_id for page in pages[:5]) == [
        f"month{n}@example.com" for n in range(5)
    ]
    assert pages[5] == []


def test_the_command_line_counts_every_match_when_asked(core: Core) -> None:
    archive_and_index(core, MONTHS)
    answer = run_arsip(core.settings, "search", "--json", "--exact", "report")
    assert answer.returncode == 0, answer.stderr
    page = json.loads(answer.stdout)
    assert page["total"] == 5 and page["total_exact"] is True
    assert run_arsip(core.settings, "search", "report").stdout.startswith("5 messages")


def test_a_month_emptied_by_retention_leaves_no_partition_behind(core: Core) -> None:
    # rum 1.3.13 crashes the server process that scans a RUM index vacuum has emptied,
    # which is what a retention sweep of a whole month followed by vacuum makes.
    postgres_only(core)
    archive_and_index(core, MONTHS)
    with core.sessions.begin() as session:
        january = session.scalar(select(Message).where(Message.message_id == "month0@example.com"))
        assert january is not None
        session.delete(january)  # as the retention sweep does: the row cascades away
    backend = core.search_backend()
    backend.delete([january.id])  # and the indexer then takes the queued deletion
    backend.close()
    with core.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM search_documents")
        months = set(
            connection.scalars(
                text(
                    "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c "
                    "ON c.oid = i.inhrelid WHERE i.inhparent = 'search_documents'::regclass"
                )
            )
        )
    assert "search_documents_y2025m01" not in months
    assert "search_documents_y2025m02" in months
    assert found(core, "monthly").total == 4
    archive_and_index(core, [MONTHS[0]])  # January's mail again: its month comes back
    assert found(core, "monthly").total == 5
