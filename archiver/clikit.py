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


@contextmanager
def said_in_one_line(*mistakes: type[Exception]) -> Iterator[None]:
    """Errors of the kinds `mistakes` (what was asked cannot be done, and the error says
    why) end in one line and exit status 1, never a traceback."""
    try:
        yield
    except mistakes as exc:
        raise CliError(str(exc)) from exc


def settings_of(ctx: click.Context) -> Settings:
    """The settings the `arsip` group loaded (from arsip.toml and ARSIP_*)."""
    return ctx.find_root().ensure_object(dict)["settings"]


def settings_source_of(ctx: click.Context) -> str:
    """Where the `arsip` group read its settings: a file's path, or "environment only"."""
    return ctx.find_root().ensure_object(dict)["source"]


def first_admin_command(ctx: click.Context) -> str:
    """The command that makes the first administrator of this archive, with the same
    `--config` as the command running."""
    import shlex

    config = ctx.find_root().ensure_object(dict).get("config")
    where = f"--config {shlex.quote(str(config))} " if config is not None else ""
    return f"arsip {where}users add EMAIL --role admin --password-stdin"


def open_core(ctx: click.Context, *, upgrade: bool, create: bool = False) -> Core:
    """The archive named by the settings, ready for a command.

    With `upgrade` (commands that change the archive) an older schema is brought up to
    date first. Without it (commands that read) the command refuses, in one line, a
    database that is behind or ahead: it never upgrades a schema under a running older
    service. Only `create` (`arsip init`, `arsip db upgrade`) makes an archive where there
    is none: any other command refuses a missing SQLite file or an empty database, and
    says where it looked, so an operator in the wrong directory never takes a new empty
    archive for the loss of theirs.
    """
    from archiver.core import build_core
    from archiver.schema import (
        NoArchive,
        SchemaError,
        bring_up_to_date,
        database_revision,
        require_current,
    )

    settings = settings_of(ctx)
    if not create and not _sqlite_file_exists(settings):
        raise CliError(_no_archive(ctx, settings))
    core = build_core(settings)
    ctx.call_on_close(core.engine.dispose)
    try:
        if upgrade:
            if not create and database_revision(core.engine) is None:
                raise NoArchive("empty database")
            bring_up_to_date(core.engine)
        else:
            require_current(core.engine)
    except NoArchive as exc:
        raise CliError(_no_archive(ctx, settings)) from exc
    except SchemaError as exc:
        raise CliError(str(exc)) from exc
    return core


def _no_archive(ctx: click.Context, settings: Settings) -> str:
    """Where a command looked for the archive and found none, and how to point it
    elsewhere: the database (its password hidden), the data directory, the settings."""
    from sqlalchemy.engine import make_url

    where = make_url(settings.database_url).render_as_string(hide_password=True)
    return (
        f"no archive at {where} (data directory {settings.data_dir.resolve()}; settings: "
        f"{settings_source_of(ctx)})\n"
        "start the service (`arsip serve`) or run `arsip init` to make one there, or point "
        "--config, ARSIP_CONFIG, ARSIP_DATA_DIR or ARSIP_DATABASE_URL at the service's archive"
    )


def password_from_stdin() -> str:
    """The password on the first line of stdin (`--password-stdin`): never an argument,
    which process lists and shell histories would show."""
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise click.UsageError("stdin held no password (give it on the first line)")
    return password


def check_output(path: Path) -> None:
    """Refuse, in one line and before any work, an output file that cannot be written
    where it is asked for: its folder is missing, is not a folder, or is not writable."""
    import os

    folder = path.parent
    if not folder.exists():
        raise CliError(f"cannot write {path}: the folder {folder} does not exist")
    if not folder.is_dir():
        raise CliError(f"cannot write {path}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CliError(f"cannot write {path}: the folder {folder} is not writable")


@contextmanager
def output_errors(path: Path) -> Iterator[None]:
    """A file that fails while a command writes it (a full disk) ends in one line."""
    try:
        yield
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from exc


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


def _sqlite_file_exists(settings: Settings) -> bool:
    """False for an SQLite archive whose file is missing (opening it would create it);
    True for every other database, which is asked for its schema instead."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return True
    return Path(url.database).exists()


def _database_reason(exc: SQLAlchemyError) -> str:
    """The driver's one-line reason, without SQLAlchemy's pointer to its documentation."""
    reason = str(getattr(exc, "orig", None) or exc)
    return reason.splitlines()[0] if reason else type(exc).__name__
