"""`arsip case ...`: open, list, show, hold and close cases, and name their reviewers.

The composition root (`archiver.cli`) adds the group. Every change is audited against the
case's name with the operating-system user as its actor (`audit.cli_actor`).
"""

from __future__ import annotations

import json
from contextlib import closing
from datetime import date, datetime
from pathlib import Path

import click
from sqlalchemy.orm import Session

from archiver import audit
from archiver.cases.export import export_case
from archiver.cases.holds import case_holds, close_case, place_case_hold
from archiver.cases.models import Case
from archiver.cases.registry import (
    CaseError,
    add_reviewer,
    all_cases,
    create_case,
    criteria,
    describe_case,
    find_case,
    remove_reviewer,
    reviewers,
)
from archiver.cases.scope import case_viewer
from archiver.clikit import CliError, open_core, said_in_one_line
from archiver.plural import plural
from archiver.production.cli import produce_command, production_options
from archiver.production.plan import Dedupe
from archiver.production.run import Format, ProgressCallback, Summary
from archiver.retention.coverage import hold_coverage
from archiver.retention.rules import RuleError
from archiver.search.backend import SearchBackend

DAY = click.DateTime(formats=["%Y-%m-%d"])

# What cannot be done as asked with a case: one line, exit status 1
MISTAKES = (CaseError, RuleError)


def _day(moment: datetime | None) -> date | None:
    return None if moment is None else moment.date()


@click.group()
def case() -> None:
    """Cases (legal matters): their mail, holds and reviewers."""


@case.command("create")
@click.argument("name")
@click.option("--description", default="", help="What the matter is (shown to reviewers).")
@click.option(
    "--custodian", "custodians", multiple=True, help="An address whose mail it covers (repeat)."
)
@click.option(
    "--query", "queries", multiple=True, help="A search query; several are OR-ed (repeat)."
)
@click.option("--since", type=DAY, default=None, help="Only mail dated this day or later.")
@click.option("--until", type=DAY, default=None, help="Only mail dated this day or earlier.")
@click.pass_context
def case_create(
    ctx: click.Context,
    name: str,
    description: str,
    custodians: tuple[str, ...],
    queries: tuple[str, ...],
    since: datetime | None,
    until: datetime | None,
) -> None:
    """Open case NAME: mail of any custodian, within the dates, matching any query.

    Give custodians, queries or both: a case with neither would be the whole archive.
    """
    core = open_core(ctx, upgrade=True)
    with said_in_one_line(*MISTAKES), core.sessions.begin() as session:
        covers = criteria(custodians, queries, _day(since), _day(until))
        create_case(session, audit.cli_actor(), name, description, covers)
    click.echo(f"case {name} opened; `arsip case hold {name}` places its hold")


@case.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@click.pass_context
def case_list(ctx: click.Context, as_json: bool) -> None:
    """Every case, open ones first."""
    core = open_core(ctx, upgrade=False)
    with core.sessions() as session:
        found = [describe_case(item) for item in all_cases(session)]
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        click.echo("no cases")
    for item in found:
        click.echo(f"{item['name']}\t{item['status']}\t{item['description']}")


@case.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@click.pass_context
def case_show(ctx: click.Context, name: str, as_json: bool) -> None:
    """Case NAME: its criteria, how many messages it covers, its holds and reviewers."""
    core = open_core(ctx, upgrade=False)
    with (
        said_in_one_line(*MISTAKES),
        closing(core.search_backend()) as backend,
        core.sessions() as session,
    ):
        found = _shown(session, backend, find_case(session, name))
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    click.echo(f"case {found['name']} ({found['status']})")
    if found["description"]:
        click.echo(f"  {found['description']}")
    for address in found["custodians"]:
        click.echo(f"  custodian {address}")
    for query in found["queries"]:
        click.echo(f"  query {query!r}")
    if found["since"] or found["until"]:
        click.echo(f"  dated {found['since'] or '…'} to {found['until'] or '…'}")
    click.echo(f"  covers {plural(found['messages'], 'message')} now")
    for hold in found["holds"]:
        state = (
            f"released {hold['released_at'][:10]}"
            if hold["released_at"]
            else f"active, keeps {plural(hold['messages'], 'message')}"
        )
        click.echo(f"  hold {hold['name']}: {state}")
    for email in found["reviewers"]:
        click.echo(f"  reviewer {email}")
    if not found["reviewers"]:
        click.echo(f"  no reviewers yet: `arsip case reviewer add {name} EMAIL`")


def _shown(session: Session, backend: SearchBackend, item: Case) -> dict:
    """What `case show` says of a case, as data."""
    holds = []
    for hold in case_holds(session, item):
        active = hold.released_at is None
        holds.append(
            {
                "name": hold.name,
                "released_at": hold.released_at.isoformat() if hold.released_at else None,
                "messages": hold_coverage(session, backend, hold).messages if active else None,
            }
        )
    members = case_viewer(backend, item).scope
    return {
        **describe_case(item),
        "messages": len(members.members) if members is not None else 0,
        "holds": holds,
        "reviewers": [user.email for user in reviewers(session, item)],
    }


@case.command("hold")
@click.argument("name")
@click.pass_context
def case_hold(ctx: click.Context, name: str) -> None:
    """Place the legal hold case NAME defines (nothing changes if it is in place)."""
    core = open_core(ctx, upgrade=True)
    with said_in_one_line(*MISTAKES), core.sessions.begin() as session:
        hold, placed = place_case_hold(session, audit.cli_actor(), find_case(session, name))
        hold_name = hold.name
    if placed:
        click.echo(f"hold {hold_name} placed for case {name}")
    else:
        click.echo(f"hold {hold_name} is in place for case {name} already")


@case.command("close")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Close without asking.")
@click.pass_context
def case_close(ctx: click.Context, name: str, yes: bool) -> None:
    """Close case NAME: release its holds and end its reviewers' access."""
    core = open_core(ctx, upgrade=True)
    with said_in_one_line(*MISTAKES), core.sessions() as session:
        item = find_case(session, name)
        if not item.is_open:
            raise CliError(f"case {name} is closed already")
        active = [hold.name for hold in case_holds(session, item) if hold.released_at is None]
    if not yes:
        releases = f" and release {', '.join(active)}" if active else ""
        click.confirm(f"Close case {name}{releases}?", abort=True)
    with said_in_one_line(*MISTAKES), core.sessions.begin() as session:
        released = close_case(session, audit.cli_actor(), find_case(session, name))
    for hold in released:
        click.echo(f"hold {hold} released")
    click.echo(f"case {name} closed")


@case.group("reviewer")
def reviewer() -> None:
    """Who reviews a case: accounts that see its mail inside it, and only that."""


def _change_reviewer(ctx: click.Context, name: str, email: str, adding: bool) -> bool:
    """Add or remove the reviewer EMAIL of case NAME; whether anything changed."""
    core = open_core(ctx, upgrade=True)
    change = add_reviewer if adding else remove_reviewer
    with said_in_one_line(*MISTAKES), core.sessions.begin() as session:
        return change(session, audit.cli_actor(), find_case(session, name), email)


@reviewer.command("add")
@click.argument("name")
@click.argument("email")
@click.pass_context
def reviewer_add(ctx: click.Context, name: str, email: str) -> None:
    """Give the account EMAIL the reviewer role on case NAME."""
    added = _change_reviewer(ctx, name, email, adding=True)
    click.echo(f"{email} reviews case {name}" + ("" if added else " already"))


@reviewer.command("remove")
@click.argument("name")
@click.argument("email")
@click.pass_context
def reviewer_remove(ctx: click.Context, name: str, email: str) -> None:
    """Take the reviewer role on case NAME from the account EMAIL."""
    if _change_reviewer(ctx, name, email, adding=False):
        click.echo(f"{email} no longer reviews case {name}")
    else:
        click.echo(f"{email} did not review case {name}")


@case.command("export")
@click.argument("name")
@production_options(dedupe=True)
@click.pass_context
def case_export(
    ctx: click.Context, name: str, output: Path, prefix: str | None, format_: str, dedupe: str
) -> None:
    """Write case NAME's mail as a production into --output: natives, text, attachments,
    Concordance and CSV load files and a manifest, control numbers running on across the
    case's productions. Audited against the case as case.export."""
    core = open_core(ctx, upgrade=True)
    actor = audit.cli_actor()
    with closing(core.search_backend()) as backend:

        def write(progress: ProgressCallback) -> Summary:
            return export_case(
                core,
                backend,
                name,
                output,
                actor,
                prefix=prefix,
                format=Format(format_),
                dedupe=Dedupe(dedupe),
                progress=progress,
            )

        produce_command(ctx, core, output, write)
