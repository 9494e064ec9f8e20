"""`arsip audit ...`: read the audit trail and check that nobody has edited it.

The composition root (`archiver.cli`) adds this group. `list --json` prints JSON Lines,
one entry per line, newest first: the log can be long, and a line at a time streams into
`jq` or a log shipper without holding the whole log in memory.
"""

from __future__ import annotations

import json
from datetime import datetime

import click
from tqdm import tqdm

from archiver import audit
from archiver.clikit import open_core
from archiver.plural import plural

BATCH = 1000


def _when(_ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return audit.parse_when(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date like 2026-01-31") from None


@click.group(name="audit")
def audit_group() -> None:
    """The audit trail: logins, auditors' reading, exports, deletions and changes."""


@audit_group.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines: one object per entry.")
@click.option("--action", help="Only this action and those below it (`message` finds message.*).")
@click.option("--actor", help="Only this actor (an account's email, cli:USER or system).")
@click.option("--since", callback=_when, help="Only entries at or after this date or ISO time.")
@click.option("--until", callback=_when, help="Only entries before this date or ISO time.")
@click.option(
    "--limit",
    default=100,
    show_default=True,
    type=click.IntRange(0),
    help="How many entries, newest first (0: all).",
)
@click.pass_context
def list_entries(
    ctx: click.Context,
    as_json: bool,
    action: str | None,
    actor: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
) -> None:
    """Show audit entries, newest first."""
    core = open_core(ctx, upgrade=False)
    shown = 0
    before: int | None = None
    with core.sessions() as session:
        while limit == 0 or shown < limit:
            want = BATCH if limit == 0 else min(BATCH, limit - shown)
            batch = audit.entries(
                session,
                action=action,
                actor=actor,
                since=since,
                until=until,
                before=before,
                limit=want,
            )
            for entry in batch:
                click.echo(_line(entry, as_json))
            shown += len(batch)
            if len(batch) < want:
                break
            before = batch[-1].seq
            session.expunge_all()
    if not shown and not as_json:
        click.echo("no audit entries match", err=True)


def _line(entry: audit.AuditEntry, as_json: bool) -> str:
    if as_json:
        return json.dumps(audit.as_json(entry), ensure_ascii=False)
    details = " ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in entry.details.items())
    return (
        f"{entry.seq:>7}  {entry.at:%Y-%m-%d %H:%M:%S}  {entry.actor:30}  "
        f"{entry.action:22}  {entry.target}  {details}".rstrip()
    )


@audit_group.command(name="verify")
@click.pass_context
def verify_chain(ctx: click.Context) -> None:
    """Recheck every entry's hash and the chain; exit 1 if one was edited or removed.

    Keep the printed head hash somewhere the database's operators cannot write: a later
    run whose log still contains that hash at the same position proves nothing before it
    was rewritten.
    """
    core = open_core(ctx, upgrade=False)
    with core.sessions() as session:
        audit.read_snapshot(session)
        top = audit.head(session)
        total = top.count if top is not None else 0
        with tqdm(total=total, unit="entry", desc="verify", disable=None) as bar:
            problems = audit.verify(session, on_entry=bar.update)
        top = audit.head(session)
    if problems:
        for problem in problems:
            click.echo(f"entry {problem.seq}: {problem.problem}")
        click.echo(f"audit log broken: {plural(len(problems), 'problem')} found")
        ctx.exit(1)
    assert top is not None  # verify reports a missing head
    click.echo(f"audit log intact: {plural(top.count, 'entry', 'entries')}, head {top.hash}")
