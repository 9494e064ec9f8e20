"""`arsip init`: write the settings file, create the archive, make the first administrator.

The one command besides `arsip serve` and `arsip db upgrade` that may create an archive:
every other command refuses to, so that an operator who runs one in the wrong directory
is told where it looked instead of being shown a new, empty archive.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from archiver.clikit import CliError, first_admin_command, open_core
from archiver.config import SettingsError, config_path, new_settings_file
from archiver.logs import configure_logging

if TYPE_CHECKING:
    from archiver.core import Core

DEFAULT_BASE_URL = "http://127.0.0.1:8080"


@click.command("init")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the archive keeps its files (default: ./var).",
)
@click.option("--database-url", help="An SQLAlchemy URL (default: SQLite in the data directory).")
@click.option("--hostname", help="The name the SMTP server greets with (default: this host's).")
@click.option("--base-url", help=f"Where people reach the web UI (default: {DEFAULT_BASE_URL}).")
@click.option("--admin", "admin_email", metavar="EMAIL", help="Make EMAIL the first administrator.")
@click.option(
    "--password-stdin", is_flag=True, help="Read the administrator's password from stdin."
)
@click.option("--yes", "-y", is_flag=True, help="Ask nothing: take the flags, or the defaults.")
@click.option("--force", is_flag=True, help="Overwrite an existing settings file.")
@click.pass_context
def init(
    ctx: click.Context,
    data_dir: Path | None,
    database_url: str | None,
    hostname: str | None,
    base_url: str | None,
    admin_email: str | None,
    password_stdin: bool,
    yes: bool,
    force: bool,
) -> None:
    """Write arsip.toml (or the --config / ARSIP_CONFIG file), create the archive it names,
    and offer to make the first administrator.

    Asks for each setting not given as a flag, with a default; with --yes it asks nothing.
    """
    state = ctx.find_root().ensure_object(dict)
    path = config_path(config_file=state["config"])
    if path.exists() and not force:
        raise CliError(f"{path} exists already: edit it, or give --force to write it anew")
    values = _ask(yes, data_dir, database_url, hostname, base_url)
    try:
        with new_settings_file(path, values) as settings:  # placed once the archive is
            configure_logging(settings)
            state["settings"] = settings
            state["source"] = f"{path.resolve()} (and ARSIP_* variables)"
            core = open_core(ctx, upgrade=True, create=True)
    except SettingsError as exc:
        click.echo(f"arsip: bad setting: {exc}", err=True)
        ctx.exit(2)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from exc
    url = core.engine.url.render_as_string(hide_password=True)
    click.echo(f"wrote {path.resolve()}")
    click.echo(f"archive at {url}, data directory {settings.data_dir.resolve()}")
    if state["config"] is None and path == Path("arsip.toml"):
        click.echo("arsip reads ./arsip.toml: run it from this directory, or give --config")
    email = admin_email
    if email is None and not yes:
        email = click.prompt(
            "First administrator's email (empty: later)", default="", show_default=False
        ).strip()
    if not email:
        click.echo(f"make the first administrator with: {first_admin_command(ctx)}")
        return
    password = _password(password_stdin, yes)
    _add_admin(core, email, password)
    later = f" (no password yet: `arsip users reset-link {email}` makes a link to set one)"
    click.echo(f"added admin {email}" + ("" if password else later))


def _ask(
    yes: bool,
    data_dir: Path | None,
    database_url: str | None,
    hostname: str | None,
    base_url: str | None,
) -> dict[str, str]:
    """The settings to write: each flag given, else the answer to a prompt, else the
    default. A data directory is written absolute: a relative one would move with the
    directory each command is run from."""

    def value(given: str | None, question: str, default: str) -> str:
        if given is not None or yes:
            return given if given is not None else default
        return click.prompt(question, default=default, show_default=bool(default)).strip()

    folder = value(
        str(data_dir) if data_dir else None, "Data directory", str(Path("var").resolve())
    )
    values = {"data_dir": str(Path(folder).expanduser().resolve())}
    url = value(database_url, "Database URL (empty: SQLite in the data directory)", "")
    if url:
        values["database_url"] = url
    values["hostname"] = value(hostname, "Host name of this mail server", socket.getfqdn())
    values["base_url"] = value(base_url, "Web address people use", DEFAULT_BASE_URL)
    return values


def _password(from_stdin: bool, yes: bool) -> str | None:
    """The first administrator's password: stdin's first line, asked for, or none yet."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.UsageError("stdin held no password (give it on the first line)")
        return password
    if yes:
        return None
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def _add_admin(core: Core, email: str, password: str | None) -> None:
    from archiver.accounts import AccountError, add_user
    from archiver.audit import cli_actor, record

    try:
        with core.sessions.begin() as session:
            add_user(session, email, "admin", password)
            details = {"role": "admin", "password": bool(password)}
            record(session, cli_actor(), "user.add", email.strip().lower(), details)
    except AccountError as exc:
        raise CliError(str(exc)) from exc
