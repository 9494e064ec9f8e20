"""Whether a database is at the schema this code needs, asked of the database itself.

Only `arsip serve`, `arsip db upgrade` and commands that write the archive change the
schema (through Alembic, in `archiver.migrate`). A command that only reads must never
upgrade a database under a running older service, and should not pay for importing
Alembic: it asks the database for its revision and compares it with the newest migration
file shipped with this code. Knowing that newest revision imports nothing (the command
line hands it to a running service, which may answer without the client ever loading
SQLAlchemy).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import migrations

if TYPE_CHECKING:
    from sqlalchemy import Engine

VERSIONS_DIR = Path(migrations.__file__).parent / "versions"


class SchemaError(RuntimeError):
    """The database is empty, behind or ahead of this code; the message says what to run."""


class NoArchive(SchemaError):
    """The database holds no Arsip schema: nothing was ever set up there."""


@cache
def head_revision() -> str:
    """The newest revision this code ships: migration files are named `NNNN_what.py` with
    revision "NNNN", one after another (a test holds this to Alembic's own head)."""
    return max(path.name[:4] for path in VERSIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.py"))


def database_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when it holds no Arsip schema.

    A database that cannot be reached raises (SQLAlchemy's error): a server that is down,
    or a database that is locked, is not an empty archive to be told to set up.
    """
    from sqlalchemy import inspect, text

    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):  # never migrated
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def bring_up_to_date(engine: Engine) -> None:
    """Upgrade the schema if it is not this code's (`arsip serve` and commands that write).

    A database already at the head, the usual case, costs one query: Alembic (a fifth of
    a second to import, and every migration file read) is loaded only when there is
    something to do, or something to refuse.
    """
    if database_revision(engine) == head_revision():
        return
    from archiver import migrate

    migrate.upgrade(engine)


def require_current(engine: Engine) -> None:
    """Raise `SchemaError` unless the database is exactly at this code's schema."""
    found, wanted = database_revision(engine), head_revision()
    where = engine.url.render_as_string(hide_password=True)
    if found is None:
        raise NoArchive(
            f"no archive in {where}: start the service (`arsip serve`) or run "
            "`arsip db upgrade` first, or point ARSIP_DATA_DIR / ARSIP_DATABASE_URL at the "
            "service's archive"
        )
    if found < wanted:
        raise SchemaError(
            f"the database is at schema {found}, this arsip needs {wanted}: run `arsip db upgrade`"
        )
    if found > wanted:
        raise SchemaError(
            f"the database is at schema {found}, newer than this arsip ({wanted}): "
            "use the arsip that upgraded it"
        )
