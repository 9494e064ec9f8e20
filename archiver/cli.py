"""The `arsip` command group: the core's commands, and the plug-ins' groups.

Each command reads like its help text. Errors the user can fix (a bad setting, a missing
file, an unknown message) end in one line on stderr and a non-zero exit status, never a
traceback.

A command imports what it uses when it runs, and the plug-ins' groups are loaded only
when one of them is asked for: `arsip search` or `arsip show` loads neither the web UI
nor the list engine, and answers in a fraction of a second.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from archiver.clikit import (
    CliError,
    check_output,
    database_errors,
    first_admin_command,
    open_core,
    output_errors,
    password_from_stdin,
    settings_of,
    settings_source_of,
)
from archiver.config import SettingsError, load_settings, settings_source
from archiver.logs import configure_logging
from archiver.plural import plural

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from archiver.accounts import User
    from archiver.core import Core
    from archiver.verify import VerifyReport

log = logging.getLogger(__name__)

WAIT_SECONDS = 30.0  # how long `arsip show --wait` waits by default
WAIT_POLL = 0.5  # seconds between its looks

# The core's own command groups (and commands) that live in their own modules, imported
# when asked for.
CORE_GROUPS = {
    "audit": ("archiver.audit_cli", "audit_group"),
    "retention": ("archiver.retention.cli", "retention"),
    "hold": ("archiver.retention.cli", "hold"),
    "case": ("archiver.cases.cli", "case"),
    "init": ("archiver.init_cli", "init"),
    "subject": ("archiver.subject_cli", "subject"),
    "timestamps": ("archiver.timestamps.cli", "timestamps_group"),
    "import": ("archiver.import_cli", "import_command"),
}


class ArsipGroup(click.Group):
    """The `arsip` group: commands defined here, the core's other groups and the plug-ins'
    groups, each imported only when it is run (or when help lists them)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx)) | set(CORE_GROUPS)
        return sorted(names | {command.name or "" for command in _plugin_commands()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is not None:
            return found
        if cmd_name in CORE_GROUPS:
            from importlib import import_module

            module, name = CORE_GROUPS[cmd_name]
            return getattr(import_module(module), name)
        return next((c for c in _plugin_commands() if c.name == cmd_name), None)

    def invoke(self, ctx: click.Context) -> object:
        with database_errors():
            return super().invoke(ctx)


def _plugin_commands() -> list[click.Command]:
    from archiver import plugins

    return plugins.cli_commands()


@click.group(cls=ArsipGroup)
@click.option(
    "--config",
    type=click.Path(path_type=Path),
    default=None,
    help="Settings file (default: ./arsip.toml, or $ARSIP_CONFIG).",
)
@click.pass_context
def cli(ctx: click.Context, config: Path | None) -> None:
    """Arsip: mail archive and mailing lists."""
    state = ctx.ensure_object(dict)
    state["config"] = config
    state["source"] = settings_source(config_file=config)
    if ctx.invoked_subcommand == "init":
        return  # init writes the settings file; a missing or broken one is no obstacle
    try:
        settings = load_settings(config_file=config)
    except SettingsError as exc:
        click.echo(f"arsip: bad setting: {exc}", err=True)
        ctx.exit(2)
    configure_logging(settings)
    state["settings"] = settings


@cli.command()
@click.option(
    "--role",
    "roles",
    default="all",
    show_default=True,
    metavar="ROLES",
    help="What this process runs: all, or a comma-separated subset of intake, worker,"
    " indexer, scheduler, web (several processes need PostgreSQL).",
)
@click.pass_context
def serve(ctx: click.Context, roles: str) -> None:
    """Run the service: SMTP and LMTP intake, spool worker, indexer, scheduler and web UI,
    or the roles given (upgrades the schema)."""
    from archiver import plugins
    from archiver.core import build_core
    from archiver.service import ChildDiedError, Service, StartError, parse_roles

    try:
        chosen = parse_roles(roles)
        core = build_core(settings_of(ctx))
        _announce(ctx, core)
        Service(
            core,
            web_app_factory=plugins.web_app_factory(),
            extensions=plugins.extensions(),
            roles=chosen,
        ).run()
    except (StartError, ChildDiedError) as exc:
        raise CliError(str(exc)) from exc
    except OSError as exc:
        raise CliError(f"cannot start: {exc}") from exc


def _announce(ctx: click.Context, core: Core) -> None:
    """Say which archive `arsip serve` runs, and, while nobody can log in, how to make
    the first administrator."""
    from sqlalchemy import inspect

    from archiver.accounts import has_accounts

    settings = core.settings
    log.info(
        "data directory %s; settings: %s", settings.data_dir.resolve(), settings_source_of(ctx)
    )
    with core.sessions() as session:
        empty = not inspect(session.connection()).has_table("users") or not has_accounts(session)
    if empty:
        log.warning(
            "no account yet; make the first administrator with: %s", first_admin_command(ctx)
        )


@cli.group()
def db() -> None:
    """Database schema."""


TEXT_DROPPED = "0011"  # the revision that drops the database's copy of message text


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Bring the database to the current schema."""
    from archiver.core import build_core
    from archiver.schema import database_revision

    probe = build_core(settings_of(ctx))
    before = database_revision(probe.engine)
    probe.engine.dispose()
    after = database_revision(open_core(ctx, upgrade=True, create=True).engine)
    click.echo(f"database at revision {after}")
    if before is not None and before < TEXT_DROPPED <= (after or ""):
        click.echo(
            "message text is now read from the stored mail only: "
            "`arsip db compact` returns the space it took in the database to the disk"
        )


@db.command("compact")
@click.pass_context
def db_compact(ctx: click.Context) -> None:
    """Give the space freed inside the database back to the file system.

    Run it once after `arsip db upgrade` to 0011, which drops the stored message text;
    it rewrites the database and needs free disk for one more copy while it runs.
    """
    from archiver import migrate

    core = open_core(ctx, upgrade=False)
    before = _database_bytes(core)
    migrate.compact(core.engine)
    after = _database_bytes(core)
    if before is None or after is None:
        click.echo("database compacted")
    else:
        click.echo(f"database compacted: {before / 1e6:,.1f} MB -> {after / 1e6:,.1f} MB")


def _database_bytes(core: Core) -> int | None:
    """The size of the database on disk, where Arsip can tell."""
    with core.engine.connect() as connection:
        if core.engine.dialect.name == "sqlite":
            pages = connection.exec_driver_sql("PRAGMA page_count").scalar_one()
            return int(pages) * int(connection.exec_driver_sql("PRAGMA page_size").scalar_one())
        return int(
            connection.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one()
        )


@db.command("revision")
@click.option("-m", "--message", required=True, help="What the migration changes.")
@click.pass_context
def db_revision(ctx: click.Context, message: str) -> None:
    """Write a new migration from the difference between models and database."""
    from archiver import migrate

    migrate.revision(open_core(ctx, upgrade=True).engine, message)


def _actor() -> str:
    from archiver.audit import cli_actor

    return cli_actor()


def _record(session: Session, action: str, target: str, details: dict | None = None) -> None:
    """Audit an operator's change made from the command line."""
    from archiver.audit import record

    record(session, _actor(), action, target, details)


def _date(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date like 2024-01-31") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@cli.command()
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The mbox file to write.",
)
@click.option("--since", help="Only mail dated on or after this date (YYYY-MM-DD or ISO time).")
@click.option("--until", help="Only mail dated before this date.")
@click.pass_context
def export(ctx: click.Context, output: Path, since: str | None, until: str | None) -> None:
    """Write archived mail, byte for byte as received, to an mbox file."""
    from tqdm import tqdm

    from archiver.export import count_messages, export_mbox
    from archiver.readops import audit_reading

    start, end = _date(since), _date(until)
    check_output(output)
    core = open_core(ctx, upgrade=False)
    total = count_messages(core, start, end)
    details = {"since": since, "until": until, "messages": total}
    audit_reading(core, _actor(), "export", str(output), details)
    with (
        output_errors(output),
        tqdm(total=total, unit="msg", desc="export", disable=None) as bar,
    ):
        count = export_mbox(core, output, start, end, on_message=lambda _n: bar.update())
    click.echo(f"wrote {plural(count, 'message')} to {output}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--export",
    "export_to",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the ledger's seal chain to this file (JSON lines) for a third party.",
)
@click.option(
    "--check-export",
    "exported",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Only recompute a chain written by --export, from the file alone.",
)
@click.option(
    "--deep",
    is_flag=True,
    help="Also parse every message again and check the database rows derived from it "
    "(sender, recipients and their roles, subject, date, list).",
)
@click.option(
    "--timestamps",
    is_flag=True,
    help="Also check every trusted timestamp token, offline, against the seal or audit "
    "entry it covers and the CA bundle ARSIP_TSA_CA.",
)
@click.pass_context
def verify(
    ctx: click.Context,
    as_json: bool,
    export_to: Path | None,
    exported: Path | None,
    deep: bool,
    timestamps: bool,
) -> None:
    """Check every blob against its hash, every message against the intake ledger and the
    ledger's daily seals; with --deep, every message's rows against its bytes; with
    --timestamps, every timestamp token; exit 1 on any problem.

    Finished days are sealed first. Warnings (ledger entries that no seal covers, seals
    not stamped yet) are shown but do not fail the check.
    """
    if exported is not None:
        _check_export(ctx, exported, as_json)
        return
    if export_to is not None:
        check_output(export_to)
    from archiver.timestamps import cli as stamps_cli

    bundle = stamps_cli.bundle_for_verify(ctx) if timestamps else None
    from tqdm import tqdm

    from archiver.ledger import export_chain
    from archiver.store import BlobKeyError
    from archiver.verify import (
        VerifyReport,
        count_blobs,
        count_messages,
        count_seals,
        seal_days,
        verify_ledger,
        verify_rows,
        verify_store,
    )

    core = open_core(ctx, upgrade=False)
    report = VerifyReport(sealed_now=seal_days(core))
    try:
        with tqdm(total=count_blobs(core), unit="blob", desc="verify", disable=None) as bar:
            verify_store(core, on_blob=bar.update, report=report)
    except BlobKeyError as exc:
        raise CliError(str(exc)) from exc
    with tqdm(total=count_seals(core), unit="day", desc="ledger", disable=None) as bar:
        verify_ledger(core, on_day=bar.update, report=report)
    if deep:
        with tqdm(total=count_messages(core), unit="msg", desc="rows", disable=None) as bar:
            verify_rows(core, on_message=bar.update, report=report)
    stamps = stamps_cli.check_timestamps(core, bundle) if bundle is not None else None
    if export_to is not None:
        with (
            output_errors(export_to),
            core.sessions() as session,
            export_to.open("w", encoding="utf-8") as out,
        ):
            written = export_chain(session, out)
    if as_json:
        data = report.as_json()
        if export_to is not None:
            data["export"] = {"file": str(export_to), "seals": written.seals}
        if stamps is not None:
            data["timestamps"] = stamps.as_json()
            data["ok"] = report.ok and stamps.ok
        click.echo(json.dumps(data))
    else:
        _print_verify(report)
        if stamps is not None:
            stamps_cli.print_report(stamps)
        if export_to is not None:
            click.echo(f"wrote {plural(written.seals, 'sealed day')} to {export_to}")
    if not report.ok or (stamps is not None and not stamps.ok):
        ctx.exit(1)


def _print_verify(report: VerifyReport) -> None:
    chain = report.chain
    for label, found in (
        ("missing", report.missing),
        ("corrupt", report.corrupt),
        ("locked", report.locked),
    ):
        for sha256 in found:
            click.echo(f"{label} {sha256}")
    for sha256, message_id in report.unrecorded:
        click.echo(f"unrecorded {sha256} <{message_id}>")
    for found in report.mismatches:
        click.echo(
            f"mismatch <{found.message_id}> {found.field}: the database says "
            f"{found.stored!r}, the bytes say {found.derived!r}"
        )
    for issue in chain.problems:
        click.echo(f"broken seal {issue.day}: {issue.text}")
    for issue in chain.warnings:
        click.echo(f"warning {issue.day}: {issue.text}")
    locked = f", {len(report.locked)} locked" if report.locked else ""
    click.echo(
        f"checked {plural(report.checked, 'blob')}: {len(report.missing)} missing, "
        f"{len(report.corrupt)} corrupt{locked}"
    )
    click.echo(
        f"checked {plural(report.messages, 'message')}: {len(report.unrecorded)} not in the ledger"
    )
    if report.deep:
        click.echo(
            f"parsed {plural(report.reparsed, 'message')} again: "
            f"{plural(len(report.mismatches), 'field')} differ from their bytes"
        )
    click.echo(
        f"checked {plural(chain.seals, 'sealed day')} "
        f"({plural(chain.entries, 'entry', 'entries')}, "
        f"{report.sealed_now} sealed now): {len(chain.problems)} broken, "
        f"{plural(len(chain.warnings), 'warning')}; "
        f"{plural(chain.unsealed, 'entry', 'entries')} not sealed yet; head {chain.head}"
    )


def _check_export(ctx: click.Context, path: Path, as_json: bool) -> None:
    """`arsip verify --check-export`: what a third party does, without the database."""
    from archiver.ledger import ExportFormatError, check_export

    try:
        with path.open(encoding="utf-8") as lines:
            report = check_export(lines)
    except (OSError, UnicodeDecodeError, ExportFormatError) as exc:
        raise CliError(f"{path}: {exc}") from exc
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "seals": report.seals,
                    "entries": report.entries,
                    "head": report.head,
                    "problems": [{"day": i.day, "problem": i.text} for i in report.problems],
                }
            )
        )
    else:
        for issue in report.problems:
            click.echo(f"broken seal {issue.day}: {issue.text}")
        click.echo(
            f"{path}: {plural(report.seals, 'sealed day')}, "
            f"{plural(report.entries, 'entry', 'entries')}: "
            f"{len(report.problems)} broken; head {report.head}"
        )
    if not report.ok:
        ctx.exit(1)


def _read(ctx: click.Context, op: str, params: dict[str, object]) -> dict:
    """Run a reading command and return its data; exit as the command failed."""
    answer = _ask(ctx, op, params)
    if "error" in answer:
        _fail(ctx, answer)
    return answer["data"]


def _ask(ctx: click.Context, op: str, params: dict[str, object]) -> dict:
    """A reading command's answer (`{"data"}` or `{"error", "status", "missing"}`): by
    the running service when one answers on its local socket (fast: it has everything
    loaded), else from here."""
    from archiver import localsocket, readops
    from archiver.schema import head_revision

    settings = settings_of(ctx)
    try:
        return localsocket.ask(settings.data_dir, op, params, head_revision())
    except localsocket.NoService:
        state = ctx.find_root().ensure_object(dict)
        core = state.get("reader") or state.setdefault("reader", open_core(ctx, upgrade=False))
        try:
            return {"data": readops.OPERATIONS[op](core, params, _actor())}
        except readops.ReadError as exc:
            return exc.as_answer()


def _fail(ctx: click.Context, answer: dict) -> None:
    click.echo(f"arsip: {answer['error']}", err=True)
    ctx.exit(answer["status"])


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """Archive size, backlogs, content check counts, trusted timestamps, and whether spamd
    and clamd answer."""
    figures = _read(ctx, "stats", {})
    if as_json:
        click.echo(json.dumps(figures))
    else:
        for name, value in figures.items():
            click.echo(f"{name:20} {value}")


@cli.command()
@click.argument("message_id")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    is_flag=False,
    flag_value=WAIT_SECONDS,
    default=None,
    metavar="[SECONDS]",
    help=f"Wait for the message to be archived, up to SECONDS (default {WAIT_SECONDS:.0f}).",
)
@click.pass_context
def show(ctx: click.Context, message_id: str, as_json: bool, wait: float | None) -> None:
    """Show one archived message's metadata, by Message-ID.

    Mail the service has just accepted is archived a moment later: --wait asks again
    until it is, instead of failing at once.
    """
    data = _wait_for_message(ctx, message_id, wait or 0.0)
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False))
    else:
        for name, value in data.items():
            click.echo(f"{name:20} {value}")


def _wait_for_message(ctx: click.Context, message_id: str, seconds: float) -> dict:
    """`arsip show`'s data, asking again every half second for up to `seconds` while the
    message is not archived."""
    import time

    deadline = time.monotonic() + seconds
    while True:
        answer = _ask(ctx, "show", {"message_id": message_id})
        if "error" not in answer:
            return answer["data"]
        if not answer.get("missing") or time.monotonic() >= deadline:
            if seconds and answer.get("missing"):
                answer = {**answer, "error": f"{answer['error']} after {seconds:g} s"}
            _fail(ctx, answer)
        time.sleep(WAIT_POLL)


# A query may start with a negated term (`arsip search -draft`): not an option.
@cli.command("search", context_settings={"ignore_unknown_options": True})
@click.argument("query", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--as", "viewer", metavar="EMAIL", help="Search as this user (default: administrator)."
)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--offset", default=0, show_default=True, type=click.IntRange(0))
@click.option(
    "--sort", type=click.Choice(["relevance", "date"]), default="relevance", show_default=True
)
@click.option(
    "--exact",
    is_flag=True,
    help="Count every match (past 10,000 the total is otherwise estimated).",
)
@click.pass_context
def search_command(
    ctx: click.Context,
    query: tuple[str, ...],
    as_json: bool,
    viewer: str | None,
    limit: int,
    offset: int,
    sort: str,
    exact: bool,
) -> None:
    """Search the archive, Gmail style: words, "phrases", from:, to:, subject:, after:, ..."""
    mistyped = [term for term in query if term.startswith("--")]
    if mistyped:  # `-word` is a query term; `--word` can only be a mistyped option
        raise click.UsageError(f"no such option: {mistyped[0]}")
    params = {"query": " ".join(query), "as": viewer, "limit": limit, "offset": offset}
    page = _read(ctx, "search", {**params, "sort": sort, "exact": exact})
    if as_json:
        click.echo(json.dumps(page, ensure_ascii=False))
        return
    about = "" if page.get("total_exact", True) else "about "
    click.echo(f"{about}{plural(page['total'], 'message')}")
    for found in page["results"]:
        sender, day = found["from"], found["date"][:10]
        click.echo(f"{day}  {sender:30.30}  {found['subject']}  <{found['message_id']}>")


@cli.command()
@click.pass_context
def reindex(ctx: click.Context) -> None:
    """Rebuild the search index from the archive alone (safe while `arsip serve` runs)."""
    from tqdm import tqdm

    from archiver.report import stats as collect_stats
    from archiver.search.backend import IndexBusyError
    from archiver.search.indexer import Indexer

    core = open_core(ctx, upgrade=True)
    with core.sessions() as session:
        total = collect_stats(session)["messages"]
    try:
        backend = core.search_backend(repair=True)
        with tqdm(total=total, unit="msg", desc="reindex", disable=None) as bar:
            count = Indexer(core.sessions, backend, core.store).rebuild(on_batch=bar.update)
        backend.close()
    except IndexBusyError as exc:
        raise CliError(f"{exc}; try again in a moment") from exc
    click.echo(f"indexed {plural(count, 'message')}")


@cli.command("journal-login")
@click.argument("name")
def journal_login(name: str) -> None:
    """Make a login with which an MTA hands in journal mail over SMTP AUTH from anywhere.

    Prints a new random secret, for the MTA's SMTP AUTH (PLAIN or LOGIN, over STARTTLS or
    on loopback), and the NAME:SHA256 entry to add to ARSIP_JOURNAL_LOGINS. Arsip keeps
    only the hash, so the secret is shown this once.
    """
    import hashlib
    import re
    import secrets

    if not re.fullmatch(r"[A-Za-z0-9._@-]{1,64}", name):
        raise CliError("a login name is 1 to 64 letters, digits, '.', '_', '@' or '-'")
    secret = secrets.token_urlsafe(32)
    click.echo(f"secret: {secret}")
    click.echo(f"ARSIP_JOURNAL_LOGINS entry: {name}:{hashlib.sha256(secret.encode()).hexdigest()}")


@cli.group("store")
def store_group() -> None:
    """Look after the blob store."""


@store_group.command("repack")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def store_repack(ctx: click.Context, as_json: bool) -> None:
    """Move loose blobs into pack files, then compact and merge packs.

    Safe while `arsip serve` runs, and resumable: an interrupted repack leaves every blob
    readable and the next one carries on. The scheduler does this every few minutes; run
    it by hand to migrate an existing store of loose files at once.
    """
    from tqdm import tqdm

    from archiver.core import build_core
    from archiver.store import StoreBusyError

    store = build_core(settings_of(ctx)).store  # the store alone: no database needed
    try:
        with tqdm(total=store.loose_count(), unit="blob", desc="repack", disable=None) as bar:
            report = store.repack(on_blob=bar.update, wait=False)
    except StoreBusyError as exc:
        raise CliError(f"{exc}; try again in a moment") from exc
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(report), indent=2))
        return
    click.echo(
        f"packed {report.packed} blobs ({report.already_packed} were packed already) into "
        f"{report.packs_written} pack(s); compacted {report.packs_compacted}, merged "
        f"{report.packs_merged} pack(s); {len(report.skipped)} damaged blob(s) left loose "
        f"in {report.seconds:.1f} s"
    )
    for sha256 in report.skipped:
        click.echo(f"damaged {sha256} (left loose; see `arsip verify`)")


ROLES = ["admin", "auditor", "user"]  # archiver.accounts.Role, without importing it


@cli.group()
def users() -> None:
    """Accounts for the web UI and the API."""


def _email(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from archiver.accounts import BadEmail, normalise_email

    try:
        return normalise_email(value)
    except BadEmail as exc:
        raise click.BadParameter(str(exc)) from None


def _account(session: Session, email: str) -> User:
    from archiver.accounts import find_user

    user = find_user(session, email)
    if user is None:
        raise CliError(f"no account for {email}; `arsip users list` shows them")
    return user


@users.command("add")
@click.argument("email", callback=_email)
@click.option(
    "--role",
    type=click.Choice(ROLES),
    default="user",
    show_default=True,
    help="Admins and auditors see all mail; users the mail of their own addresses.",
)
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)
@click.pass_context
def users_add(ctx: click.Context, email: str, role: str, password_stdin: bool) -> None:
    """Create an account; without --password-stdin nobody can log in to it yet."""
    from archiver.accounts import AccountExists, add_user

    password = password_from_stdin() if password_stdin else None
    try:
        with open_core(ctx, upgrade=True).sessions.begin() as session:
            add_user(session, email, role, password)
            _record(session, "user.add", email, {"role": role, "password": bool(password)})
    except AccountExists as exc:
        raise CliError(str(exc)) from exc
    click.echo(f"added {role} {email}" + ("" if password else " (no password yet)"))


@users.command("password")
@click.argument("email", callback=_email)
@click.pass_context
def users_password(ctx: click.Context, email: str) -> None:
    """Set an account's password from the first line of stdin; its sessions end."""
    from archiver.accounts import set_password

    password = password_from_stdin()
    with open_core(ctx, upgrade=True).sessions.begin() as session:
        set_password(_account(session, email), password)
        _record(session, "user.password", email)
    click.echo(f"password set for {email}")


@users.command("delete")
@click.argument("email", callback=_email)
@click.option("--yes", is_flag=True, help="Delete without asking.")
@click.pass_context
def users_delete(ctx: click.Context, email: str, yes: bool) -> None:
    """Delete an account, with its addresses, API tokens and web sessions.

    The audit log keeps what the account did. The last administrator cannot be deleted.
    """
    from archiver.accounts import AccountError, delete_user, require_another_administrator

    core = open_core(ctx, upgrade=True)
    try:
        with core.sessions() as session:  # refused before asking, when it would be
            require_another_administrator(session, _account(session, email))
    except AccountError as exc:
        raise CliError(str(exc)) from exc
    if not yes:
        click.confirm(f"Delete the account {email}?", abort=True)
    try:
        with core.sessions.begin() as session:
            delete_user(session, _account(session, email), _actor())
    except AccountError as exc:
        raise CliError(str(exc)) from exc
    click.echo(f"deleted the account {email}")


@users.command("role")
@click.argument("email", callback=_email)
@click.argument("role", type=click.Choice(ROLES))
@click.pass_context
def users_role(ctx: click.Context, email: str, role: str) -> None:
    """Give an account another role (admin, auditor or user); the last administrator
    stays one."""
    from archiver.accounts import AccountError, change_role

    try:
        with open_core(ctx, upgrade=True).sessions.begin() as session:
            changed = change_role(session, _account(session, email), role, _actor())
    except AccountError as exc:
        raise CliError(str(exc)) from exc
    click.echo(f"{email} {'is now' if changed else 'was already'} {role}")


@users.command("reset-link")
@click.argument("email", callback=_email)
@click.pass_context
def users_reset_link(ctx: click.Context, email: str) -> None:
    """Print a link with which the account's owner sets a new password.

    The link works once, for 24 hours, and no longer once the password has changed.
    Links start with ARSIP_BASE_URL, as links in list mail do.
    """
    from archiver.password_reset import LIFETIME_SECONDS, reset_link

    core = open_core(ctx, upgrade=True)
    settings = core.settings
    with core.sessions.begin() as session:
        user = _account(session, email)
        if user.disabled_at is not None:
            raise CliError(f"{email} is disabled; `arsip users enable {email}` first")
        link = reset_link(settings.public_url, settings.signing_key(), user)
        _record(session, "user.reset-link", email, {"hours": LIFETIME_SECONDS // 3600})
    click.echo(link)
    click.echo(
        f"it works once, for {LIFETIME_SECONDS // 3600} hours: give it to {email} only",
        err=True,
    )


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
@click.pass_context
def users_list(ctx: click.Context, as_json: bool) -> None:
    """Every account, its role and its verified addresses."""
    from sqlalchemy import select

    from archiver.accounts import User, verified_addresses

    with open_core(ctx, upgrade=False).sessions() as session:
        rows = [
            {
                "email": user.email,
                "role": user.role,
                "addresses": list(verified_addresses(session, user)),
                "has_password": user.password_hash is not None,
                "disabled": user.disabled_at is not None,
                "created_at": user.created_at.isoformat(),
            }
            for user in session.scalars(select(User).order_by(User.email))
        ]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
        return
    for row in rows:
        notes = ("" if row["has_password"] else "  (no password)") + (
            "  (disabled)" if row["disabled"] else ""
        )
        click.echo(f"{row['email']:40} {row['role']:8} {' '.join(row['addresses'])}{notes}")


@users.command("token")
@click.argument("email", callback=_email)
@click.option(
    "--expires",
    metavar="PERIOD",
    help="Let the token lapse after this many days or years (90d, 1y); default: never.",
)
@click.pass_context
def users_token(ctx: click.Context, email: str, expires: str | None) -> None:
    """Make a new API token and print it; it is stored hashed and cannot be shown again."""
    from archiver.accounts import find_token, new_api_token
    from archiver.retention.periods import Period, PeriodError

    try:
        expires_at = Period.parse(expires).end(datetime.now(UTC)) if expires else None
    except PeriodError as exc:
        raise click.BadParameter(str(exc), param_hint="--expires") from None
    with open_core(ctx, upgrade=True).sessions.begin() as session:
        token = new_api_token(session, _account(session, email), expires_at)
        row = find_token(session, token)
        assert row is not None  # just made
        details = {"id": row.id, "expires_at": expires_at.isoformat() if expires_at else None}
        _record(session, "user.token", email, details)
    click.echo(token)


@users.command("tokens")
@click.argument("email", callback=_email)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
@click.pass_context
def users_tokens(ctx: click.Context, email: str, as_json: bool) -> None:
    """An account's API tokens: id, made, last used, expiry (the tokens themselves were
    never kept)."""
    from archiver.accounts import tokens_of

    def when(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment is not None else None

    with open_core(ctx, upgrade=False).sessions() as session:
        rows = [
            {
                "id": row.id,
                "created_at": when(row.created_at),
                "last_used_at": when(row.last_used_at),
                "expires_at": when(row.expires_at),
            }
            for row in tokens_of(session, _account(session, email))
        ]
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        click.echo(
            f"{row['id']:>6}  made {row['created_at']}  last used {row['last_used_at'] or 'never'}"
            f"  expires {row['expires_at'] or 'never'}"
        )


@users.command("revoke-token")
@click.argument("token_id", metavar="ID", type=click.IntRange(min=1))
@click.pass_context
def users_revoke_token(ctx: click.Context, token_id: int) -> None:
    """Revoke the API token ID (from `arsip users tokens`): it stops working at once."""
    from archiver.accounts import User, revoke_token

    with open_core(ctx, upgrade=True).sessions.begin() as session:
        row = revoke_token(session, token_id)
        if row is None:
            raise CliError(f"no API token {token_id}; `arsip users tokens EMAIL` lists them")
        owner = session.get(User, row.user_id)
        email = owner.email if owner is not None else str(row.user_id)
        _record(session, "user.token.revoke", email, {"id": token_id})
    click.echo(f"revoked token {token_id} of {email}")


@users.command("disable")
@click.argument("email", callback=_email)
@click.pass_context
def users_disable(ctx: click.Context, email: str) -> None:
    """Disable an account: its sessions end, it cannot log in, its API tokens stop working.

    Its addresses, tokens and history are kept; `arsip users enable` undoes it.
    """
    _set_disabled(ctx, email, True)


@users.command("enable")
@click.argument("email", callback=_email)
@click.pass_context
def users_enable(ctx: click.Context, email: str) -> None:
    """Let a disabled account log in and use its API tokens again."""
    _set_disabled(ctx, email, False)


def _set_disabled(ctx: click.Context, email: str, disabled: bool) -> None:
    from archiver.accounts import set_disabled

    state, action = ("disabled", "user.disable") if disabled else ("enabled", "user.enable")
    with open_core(ctx, upgrade=True).sessions.begin() as session:
        changed = set_disabled(_account(session, email), disabled)
        if changed:
            _record(session, action, email)
    click.echo(f"{email} {'is now' if changed else 'was already'} {state}")


@users.command("add-address")
@click.argument("email", callback=_email)
@click.argument("address", callback=_email)
@click.pass_context
def users_add_address(ctx: click.Context, email: str, address: str) -> None:
    """Let an account read ADDRESS's mail: you vouch for it, so it counts as verified."""
    from archiver.accounts import AccountExists, add_address

    try:
        with open_core(ctx, upgrade=True).sessions.begin() as session:
            add_address(session, _account(session, email), address, verified=True)
            _record(
                session,
                "user.address.add",
                email,
                {"address": address, "verified": True},
            )
    except AccountExists as exc:
        raise CliError(str(exc)) from exc
    click.echo(f"{email} now reads the mail of {address}")


def main() -> None:
    """Console script entry point."""
    cli(prog_name="arsip")
