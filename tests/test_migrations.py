"""The schema comes only from migrations, and they describe exactly what the models say."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from archiver import accounts as account_models  # noqa: F401  (the web UI's accounts)
from archiver import migrate
from archiver.models import Base
from archiver.search import postgres_index
from archiver.service import Core
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
