"""What every `arsip` command shares: one-line errors, the settings, opening the archive.

The command groups of the core and of plug-ins use these, so that each opens the
archive the same way: commands that only read ask the database for its schema revision
and never migrate; commands that write bring it up to date first. The engine is disposed
when the command ends, and a database that fails a command (a server down, a locked
file) ends it in one line (`database_errors`), whichever command it was.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from sqlalchemy.exc import SQLAlchemyError

    from archiver.config import Settings
    from archiver.core import Core


class CliError(click.ClickException):
    """A failure explained in one line; exits with status 1."""


def settings_of(ctx: click.Context) -> Settings:
    """The settings the `arsip` group loaded (from arsip.toml and ARSIP_*)."""
    return ctx.find_root().ensure_object(dict)["settings"]


def open_core(ctx: click.Context, *, upgrade: bool) -> Core:
    """The archive named by the settings, ready for a command.

    With `upgrade` (commands that set up or change the archive) the schema is brought up
    to date first. Without it (commands that read) the command refuses, in one line, a
    database that is missing, behind or ahead: it never upgrades a schema under a running
    older service, nor creates an empty SQLite file where the operator expected theirs.
    """
    from archiver.core import build_core
    from archiver.schema import SchemaError, require_current

    settings = settings_of(ctx)
    if not upgrade:
        _require_sqlite_file(settings)
    core = build_core(settings)
    ctx.call_on_close(core.engine.dispose)
    try:
        if upgrade:
            from archiver import migrate

            migrate.upgrade(core.engine)
        else:
            require_current(core.engine)
    except SchemaError as exc:
        raise CliError(str(exc)) from exc
    return core


@contextmanager
def database_errors() -> Iterator[None]:
    """End a command the database failed in one line, with exit status 1, not a traceback.

    SQLAlchemy is not imported for this: a command that never loaded it (one a running
    service answered) cannot have raised its errors.
    """
    try:
        yield
    except Exception as exc:
        errors = sys.modules.get("sqlalchemy.exc")
        if errors is None or not isinstance(exc, errors.SQLAlchemyError):
            raise
        raise CliError(f"cannot use the database: {_database_reason(exc)}") from exc


def _require_sqlite_file(settings: Settings) -> None:
    """Refuse to read an SQLite archive that does not exist rather than create it."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return
    if not Path(url.database).exists():
        raise CliError(
            f"no archive at {url.database}: start the service (`arsip serve`) first, or "
            "point ARSIP_DATA_DIR / ARSIP_DATABASE_URL at the service's archive"
        )


def _database_reason(exc: SQLAlchemyError) -> str:
    """The driver's one-line reason, without SQLAlchemy's pointer to its documentation."""
    reason = str(getattr(exc, "orig", None) or exc)
    return reason.splitlines()[0] if reason else type(exc).__name__
