"""`arsip import`: mail files, PST and OST files, and IMAP mailboxes into the archive.

Every source is checked before any mail is read (files exist, URLs are well formed and
would not send a password in the clear), so a typo costs nothing. Each import is audited
(`mail.import`): what was read, and how much of it was new; an IMAP source by its URL,
which never holds the password.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from archiver.clikit import CliError, open_core, password_from_stdin
from archiver.plural import plural

if TYPE_CHECKING:
    from archiver.core import Core
    from archiver.imap import ImapSource

LISTED = 20  # how many skipped files `arsip import` names one by one


@click.command("import")
@click.argument("sources", nargs=-1, required=True, metavar="PATH|URL...")
@click.option("--list", "list_id", metavar="LIST-ID", help="file the mail into this list's archive")
@click.option(
    "--index-ahead",
    type=click.IntRange(min=0),
    default=10_000,
    show_default=True,
    metavar="N",
    help="wait while more than N messages wait for the search index (0: never wait)",
)
@click.option(
    "--accept-unparseable",
    is_flag=True,
    help="Archive files that do not start with mail headers too, flagged as the parser "
    "finds them (no Message-ID, no date, unparseable), instead of skipping them.",
)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the IMAP password from the first line of stdin (needed for imap:// URLs).",
)
@click.option(
    "--starttls", is_flag=True, help="Encrypt an imap:// connection with STARTTLS (port 143)."
)
@click.option(
    "--cafile",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Trust the certificate authorities in this PEM file for IMAP over TLS too.",
)
@click.pass_context
def import_command(
    ctx: click.Context,
    sources: tuple[str, ...],
    list_id: str | None,
    index_ahead: int,
    accept_unparseable: bool,
    password_stdin: bool,
    starttls: bool,
    cafile: Path | None,
) -> None:
    """Archive the mail in mbox files, maildirs, folders of message files, Outlook PST
    and OST files, and IMAP mailboxes (imaps://user@host/INBOX; no mailbox: all of them).

    Importing the same mail again adds nothing. A PST's folders and an IMAP account's
    mailboxes are kept as each message's folders, found with `folder:`. An IMAP mailbox
    is read on from where its last import stopped; the password comes on stdin
    (--password-stdin), and the connection is encrypted (imaps://, or imap:// with
    --starttls) unless the server is on this machine.

    A List-Id header alone files nothing into a list (anyone can write one); with --list,
    the operator vouches for that list's header: messages whose List-Id names it are
    filed into its archive (give the List-Id, as `arsip lists show` prints it). With a
    service running, the import keeps at most --index-ahead messages ahead of its search
    index, so mail becomes searchable as it comes in rather than long after. Files that
    do not start with mail headers (a stray JSON, HTML or binary file) are skipped and
    named, unless --accept-unparseable.
    """
    from archiver.imap import ImapError, check_transport, is_imap_url, parse_source
    from archiver.importer import list_id_of

    paths = [Path(source) for source in sources if not is_imap_url(source)]
    try:
        mailboxes = [parse_source(source) for source in sources if is_imap_url(source)]
        for mailbox in mailboxes:
            check_transport(mailbox, starttls)
    except ImapError as exc:
        raise CliError(str(exc)) from exc
    if not mailboxes and (password_stdin or starttls or cafile):
        raise click.UsageError("--password-stdin, --starttls and --cafile are for IMAP URLs")
    if mailboxes and not password_stdin:
        raise CliError("an IMAP import needs the account's password: give it with --password-stdin")
    for path in paths:
        if not path.exists():
            raise CliError(f"{path}: no such file or folder")
    wanted = None
    if list_id is not None:
        wanted = list_id_of(list_id)
        if wanted is None:
            raise CliError(f"--list {list_id!r}: give a List-Id such as dev.lists.example.com")
    password = password_from_stdin() if mailboxes else ""
    core = open_core(ctx, upgrade=True)
    if paths:
        _import_files(core, paths, wanted, index_ahead, accept_unparseable)
    for mailbox in mailboxes:
        _import_mailbox(core, mailbox, password, starttls, cafile, wanted, index_ahead)


def _import_files(
    core: Core, paths: list[Path], list_id: str | None, index_ahead: int, accept: bool
) -> None:
    from archiver.audit import capped
    from archiver.importer import import_paths
    from archiver.mailfiles import MailFileError

    try:
        report = import_paths(
            core,
            paths,
            progress=sys.stderr.isatty(),
            list_id=list_id,
            index_ahead=index_ahead,
            accept_unparseable=accept,
        )
    except (MailFileError, OSError) as exc:
        raise CliError(str(exc)) from exc
    for origin in report.not_mail[:LISTED]:
        click.echo(f"skipped {origin}: not mail (no header block at its start)", err=True)
    if len(report.not_mail) > LISTED:
        click.echo(f"... and {plural(len(report.not_mail) - LISTED, 'more file')}", err=True)
    skipped, left_out = len(report.not_mail), report.pst_skipped
    click.echo(
        _counts(report.read, report.added, report.duplicates, report.index_waits)
        + (f"; {plural(skipped, 'file')} skipped (not mail)" if skipped else "")
        + (
            f"; readpst left out {plural(left_out, 'item')} (not mail, or unreadable)"
            if left_out
            else ""
        )
    )
    target = str(paths[0]) if len(paths) == 1 else plural(len(paths), "path")
    details = {
        "paths": capped([str(path) for path in paths]),
        "read": report.read,
        "new": report.added,
        "skipped": skipped + left_out,
    }
    _audit(core, target, details)


def _import_mailbox(
    core: Core,
    source: ImapSource,
    password: str,
    starttls: bool,
    cafile: Path | None,
    list_id: str | None,
    index_ahead: int,
) -> None:
    from archiver.imap import ImapError
    from archiver.imap_import import import_imap

    try:
        reports = import_imap(
            core,
            source,
            password,
            starttls=starttls,
            cafile=cafile,
            progress=sys.stderr.isatty(),
            list_id=list_id,
            index_ahead=index_ahead,
        )
    except (ImapError, OSError) as exc:
        raise CliError(str(exc)) from exc
    for report in reports:
        click.echo(
            f"{report.folder}: "
            + _counts(report.read, report.added, report.duplicates, report.index_waits)
            + (
                "; renumbered by the server (new UIDVALIDITY): read again"
                if report.renumbered
                else ""
            )
        )
        details = {"folder": report.folder, "read": report.read, "new": report.added}
        _audit(core, report.url, details | ({"renumbered": True} if report.renumbered else {}))
    if not reports:
        click.echo(f"{source.url()}: no mailbox to read")


def _counts(read: int, added: int, duplicates: int, waited: int) -> str:
    return f"read {plural(read, 'message')}: {added} new, {duplicates} already archived" + (
        f"; waited {plural(waited, 'time')} for the search index to catch up" if waited else ""
    )


def _audit(core: Core, target: str, details: dict[str, object]) -> None:
    """One `mail.import` entry: the operator brought this mail in."""
    from archiver.audit import cli_actor, record

    with core.sessions.begin() as session:
        record(session, cli_actor(), "mail.import", target, details)
