"""The schema comes only from migrations, and they describe exactly what the models say."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from archiver import accounts as account_models  # noqa: F401  (the web UI's accounts)
from archiver import audit as audit_models  # noqa: F401  (the audit trail)
from archiver import ledger as ledger_models  # noqa: F401  (tamper evidence)
from archiver import migrate
from archiver.cases import models as case_models  # noqa: F401  (legal cases)
from archiver.core import Core
from archiver.erasure import models as erasure_models  # noqa: F401  (erasure requests)
from archiver.models import Base
from archiver.production import models as production_models  # noqa: F401
from archiver.retention import models as retention_models  # noqa: F401
from archiver.search import postgres_index
from archiver.timestamps import models as timestamp_models  # noqa: F401  (RFC 3161)
from lists import models as list_models  # noqa: F401  (the list engine's tables)


def test_models_and_migrations_agree(core: Core) -> None:
    with core.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_name": migrate.include_name}
        )
        differences = compare_metadata(context, Base.metadata)
    assert differences == [], "models and migrations differ: run `arsip db revision -m ...`"


def test_the_postgres_search_table_matches_its_migration(core: Core) -> None:
    if core.engine.dialect.name != "postgresql":
        pytest.skip("the full text search table exists on PostgreSQL only")
    with core.engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "include_name": lambda name, type_, parents: (
                    type_ != "table" or name == "search_documents"
                ),
            },
        )
        differences = compare_metadata(context, postgres_index.metadata)
    assert differences == []


def test_upgrade_is_idempotent_and_reaches_head(core: Core) -> None:
    migrate.upgrade(core.engine)
    assert migrate.current_revision(core.engine) == migrate.head_revision(core.engine)


def test_sqlite_runs_in_wal_mode(tmp_path) -> None:
    from archiver.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_an_existing_database_keeps_its_addresses_when_claims_may_be_shared(
    empty_database_url: str,
) -> None:
    from alembic import command
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from archiver.db import make_engine

    engine = make_engine(empty_database_url)
    try:
        migrate.upgrade(engine, "0005")
        with engine.begin() as connection:
            for user_id, email in ((1, "ann@example.org"), (2, "bob@example.org")):
                connection.execute(
                    text(
                        "INSERT INTO users (id, email, role, created_at, failed_logins) "
                        "VALUES (:id, :email, 'user', '2026-01-01 00:00:00', 0)"
                    ),
                    {"id": user_id, "email": email},
                )
            connection.execute(
                text(
                    "INSERT INTO user_addresses (user_id, address, verified) VALUES "
                    "(1, 'ann@example.org', true), (1, 'shared@example.com', false), "
                    "(2, 'bob@example.org', true)"
                )
            )

        migrate.upgrade(engine, "0006")
        assert migrate.current_revision(engine) == "0006"
        rows = "SELECT user_id, address, verified FROM user_addresses ORDER BY user_id, address"
        with engine.connect() as connection:
            assert [tuple(row) for row in connection.execute(text(rows))] == [
                (1, "ann@example.org", True),
                (1, "shared@example.com", False),
                (2, "bob@example.org", True),
            ]
        claim = "INSERT INTO user_addresses (user_id, address, verified) VALUES (2, :a, :v)"
        with engine.begin() as connection:  # a second unverified claim is welcome now
            connection.execute(text(claim), {"a": "shared@example.com", "v": False})
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(text(claim), {"a": "ann@example.org", "v": True})

        # Down again, one claim an address survives: the verified one, else the oldest.
        config = migrate.alembic_config(engine)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0005")
        with engine.connect() as connection:
            assert [tuple(row) for row in connection.execute(text(rows))] == [
                (1, "ann@example.org", True),
                (1, "shared@example.com", False),
                (2, "bob@example.org", True),
            ]
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision(engine)
    finally:
        engine.dispose()


def test_upgrading_to_0016_dates_retention_by_arrival_and_drops_reply_to_from_search(
    core: Core,
) -> None:
    """An archive written before 0016 gets the date retention counts from by the new rule,
    and (PostgreSQL) a search table whose viewer filter no longer names Reply-To."""
    from datetime import UTC, datetime

    from sqlalchemy import select, text

    from archiver.archive import RawMessage
    from archiver.models import Message
    from archiver.search.indexer import Indexer
    from tests.support import simple_message

    received = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    old = simple_message("old@example.com", extra_headers="Reply-To: rita@example.com\r\n")
    with core.sessions.begin() as session:
        core.archive.archive_batch(
            session,
            [
                RawMessage(old, "alice@example.com", [], received, "smtp", journal_source=True),
                RawMessage(simple_message("imported@example.com"), "", [], received, "import"),
            ],
        )
    backend = core.search_backend()
    Indexer(core.sessions, backend, core.store).run_once()
    backend.close()
    postgres = core.engine.dialect.name == "postgresql"

    def participants() -> list[str]:
        with core.engine.connect() as connection:
            return connection.execute(
                text(
                    "SELECT participants FROM search_documents d JOIN messages m ON "
                    "m.id = d.message_pk WHERE m.message_id = 'old@example.com'"
                )
            ).scalar_one()

    migrate.downgrade(core.engine, "0012")
    if postgres:  # before 0016 the filter held every address, Reply-To included
        assert "rita@example.com" in participants()
    migrate.upgrade(core.engine)
    with core.sessions() as session:
        dates = dict(session.execute(select(Message.message_id, Message.retention_date)).all())
    assert dates == {
        "old@example.com": received,  # dated 2 February, received 1 December
        "imported@example.com": datetime(2026, 2, 2, 10, 0, tzinfo=UTC),
    }
    if postgres:
        assert sorted(participants()) == ["alice@example.com", "bob@example.com"]


def test_mail_in_the_outbox_before_0014_is_known_by_its_message_id(empty_database_url: str) -> None:
    """Bounces of mail sent before VERP addresses were signed still count: the upgrade
    reads the Message-ID of every message already in the outbox."""
    from sqlalchemy import text

    from archiver.db import make_engine

    engine = make_engine(empty_database_url)
    try:
        migrate.upgrade(engine, "0012")
        insert = (
            "INSERT INTO outbox_messages (kind, sender, personalize, data, created_at) "
            "VALUES ('post', 'dev-bounces@lists.example.com', true, :data, '2026-12-01 00:00:00')"
        )
        with engine.begin() as connection:
            folded = b"Message-ID:\r\n <post-1@example.org>\r\nFrom: ann@example.org\r\n\r\nHi"
            connection.execute(text(insert), {"data": folded})
            connection.execute(text(insert), {"data": b"Subject: no id\r\n\r\nHi"})
        migrate.upgrade(engine, "0014")
        with engine.connect() as connection:
            found = connection.execute(text("SELECT message_id FROM outbox_messages ORDER BY id"))
            assert [row[0] for row in found] == ["post-1@example.org", ""]
        migrate.upgrade(engine)
    finally:
        engine.dispose()
