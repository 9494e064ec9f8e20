"""`arsip retention ...` and `arsip hold ...`: policies, holds, sweeps and explanations.

The composition root (`archiver.cli`) adds these groups. Every change is audited with the
operating-system user as its actor.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import click

from archiver import audit
from archiver.clikit import CliError, open_core, said_in_one_line
from archiver.core import Core
from archiver.plural import plural
from archiver.retention.coverage import Note, hold_coverage, messages, policy_coverage
from archiver.retention.doomed import PAGE_SIZE, DoomedPage, doomed_page
from archiver.retention.models import LegalHold, RetentionPolicy
from archiver.retention.periods import PeriodError
from archiver.retention.rules import (
    RuleError,
    add_hold,
    add_policy,
    describe_hold,
    holds,
    policies,
    release_hold,
    remove_policy,
    set_paused,
    sweep_state,
)
from archiver.retention.sweep import Sweeper, SweepReport, explain
from archiver.search.backend import SearchBackend

# What cannot be done as asked with a policy or hold: one line, exit status 1
MISTAKES = (RuleError, PeriodError)


@contextmanager
def _backend(core: Core) -> Iterator[SearchBackend]:
    backend = core.search_backend()
    try:
        yield backend
    finally:
        backend.close()


def _say(notes: list[Note]) -> None:
    """What a saved rule covers on stdout; warnings, which want a second look, on stderr."""
    for note in notes:
        if note.warning:
            click.echo(f"warning: {note.text}", err=True)
        else:
            click.echo(note.text)


def _day(text: str | None, option: str) -> datetime | None:
    if not text:
        return None
    try:
        return audit.parse_when(text)
    except ValueError as exc:
        raise CliError(f"{option} {text!r}: write a date as YYYY-MM-DD") from exc


def _policy_json(policy: RetentionPolicy) -> dict[str, object]:
    return {
        "name": policy.name,
        "scope": policy.scope,
        "keep": policy.keep,
        "created_at": policy.created_at.isoformat() if policy.created_at else None,
        "created_by": policy.created_by,
    }


@click.group()
def retention() -> None:
    """Retention policies: how long mail is kept, and the sweep that deletes the rest."""


@retention.command("add")
@click.option("--name", required=True, help="A name to refer to the policy by.")
@click.option("--keep", required=True, help="How long: days or years, like 90d or 7y.")
@click.option(
    "--scope",
    default=None,
    help="A search query the policy applies to (list:ADDR, from:DOMAIN, words...); "
    "without one, every message.",
)
@click.pass_context
def retention_add(ctx: click.Context, name: str, keep: str, scope: str | None) -> None:
    """Keep what SCOPE matches for KEEP after its date; the longest matching policy wins."""
    core = open_core(ctx, upgrade=True)
    with said_in_one_line(*MISTAKES), core.sessions.begin() as session:
        policy = add_policy(session, audit.cli_actor(), name, keep, scope)
        click.echo(f"policy {policy.name}: keep {policy.scope or 'everything'} for {policy.keep}")
        name, scoped = policy.name, policy.scope is not None
    with _backend(core) as backend, core.sessions() as session:
        _say(policy_coverage(session, backend, name).notes(scoped))


@retention.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@click.pass_context
def retention_list(ctx: click.Context, as_json: bool) -> None:
    """The policies, and whether sweeps are paused."""
    core = open_core(ctx, upgrade=False)
    with core.sessions() as session:
        found = policies(session)
        state = sweep_state(session)
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "policies": [_policy_json(policy) for policy in found],
                        "paused": state.paused,
                        "last_finished_at": state.last_finished_at.isoformat()
                        if state.last_finished_at
                        else None,
                        "last_deleted": state.last_deleted,
                    },
                    indent=2,
                )
            )
            return
        if not found:
            click.echo("no retention policies: every message is kept forever")
        for policy in found:
            click.echo(f"{policy.name}\tkeep {policy.keep}\t{policy.scope or '(everything)'}")
        if state.paused:
            click.echo(f"sweeps are paused (by {state.paused_by})")


@retention.command("remove")
@click.argument("name")
@click.pass_context
def retention_remove(ctx: click.Context, name: str) -> None:
    """Delete policy NAME; what only it matched is then kept forever."""
    core = open_core(ctx, upgrade=True)
    with said_in_one_line(*MISTAKES), core.sessions.begin() as session:
        remove_policy(session, audit.cli_actor(), name)
    click.echo(f"policy {name} removed")


@retention.command("apply")
@click.option("--dry-run", is_flag=True, help="Count what each policy would delete only.")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
@click.option(
    "--list",
    "listing",
    is_flag=True,
    help=f"With --dry-run: list the messages it would delete, oldest first, {PAGE_SIZE} a page.",
)
@click.option("--page", type=click.IntRange(min=1), default=1, help="With --list: which page.")
@click.option(
    "--export",
    "export_format",
    type=click.Choice(["mbox"]),
    default=None,
    help="With --dry-run: write the messages it would delete to -o FILE.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The file --export writes.",
)
@click.pass_context
def retention_apply(
    ctx: click.Context,
    dry_run: bool,
    as_json: bool,
    listing: bool,
    page: int,
    export_format: str | None,
    output: Path | None,
) -> None:
    """Run a sweep now (the service runs one every night)."""
    if (listing or export_format) and not dry_run:
        raise click.UsageError("--list and --export show what a dry run would delete: add it")
    if (export_format is None) != (output is None):
        raise click.UsageError("--export mbox and -o FILE go together")
    core = open_core(ctx, upgrade=True)
    with _backend(core) as backend:
        sweeper = Sweeper(core.sessions, core.store, backend, actor=audit.cli_actor())
        report = sweeper.run(dry_run=dry_run, collect=listing or output is not None)
    listed = _doomed_listing(core, report.doomed, page) if listing else None
    if output is not None:
        _export_doomed(core, report.doomed, output)
    if as_json:
        document = report.as_json()
        if listed is not None:
            document["messages"] = [item.as_json() for item in listed.messages]
        click.echo(json.dumps(document, indent=2))
        return
    if listed is not None:
        _print_listing(listed)
    _print_report(report)


def _doomed_listing(core: Core, doomed: list[int], number: int) -> DoomedPage:
    """Page `number` of what the dry run would delete; reading it is audited, as a search
    is."""
    from archiver.readops import audit_reading

    with core.sessions() as session:
        page = doomed_page(session, doomed, number)
    details = {"page": page.number, "messages": page.total}
    audit_reading(core, audit.cli_actor(), "retention.preview", "dry run", details)
    return page


def _print_listing(page: DoomedPage) -> None:
    for item in page.messages:
        click.echo(
            f"{item.date:%Y-%m-%d %H:%M}\t{item.sender}\t{item.subject or '(no subject)'}"
            f"\t{item.list_id or ''}\t<{item.message_id}>"
        )
    if page.total:
        more = f"; --page {page.number + 1} for more" if page.number < page.last_page else ""
        click.echo(f"messages {page.first}-{page.last} of {page.total}{more}")


def _export_doomed(core: Core, doomed: list[int], output: Path) -> None:
    """Write what the dry run would delete to `output` as mbox; audited as an export."""
    from tqdm import tqdm

    from archiver.export import export_messages
    from archiver.readops import audit_reading

    details = {"retention": "dry run", "messages": len(doomed)}
    audit_reading(core, audit.cli_actor(), "export", str(output), details)
    try:
        with tqdm(total=len(doomed), unit="msg", desc="export", disable=None) as bar:
            count = export_messages(core, doomed, output, on_message=lambda _n: bar.update())
    except OSError as exc:
        raise CliError(f"{output}: {exc.strerror or exc}") from exc
    click.echo(f"wrote the {count} messages it would delete to {output}", err=True)


def _print_report(report: SweepReport) -> None:
    if report.paused and not report.deleted:
        click.echo("sweeps are paused: nothing deleted (`arsip retention resume`)")
        return
    verb = "would delete" if report.dry_run else "deleted"
    for name, count in sorted(report.per_policy.items()):
        click.echo(f"policy {name}: {verb} {plural(count, 'message')}")
    for name, count in sorted(report.per_hold.items()):
        click.echo(f"hold {name}: keeps {plural(count, 'message')} past their time")
    click.echo(
        f"{verb} {plural(report.deleted, 'message')} in total; {report.kept_by_holds} kept by holds"
        + (f"; {report.waiting_for_index} wait for the indexer" if report.waiting_for_index else "")
    )
    if report.paused:
        click.echo("sweeps were paused part-way; the rest goes at the next sweep")


@retention.command("explain")
@click.argument("message_id")
@click.option("--json", "as_json", is_flag=True, help="The explanation as JSON.")
@click.pass_context
def retention_explain(ctx: click.Context, message_id: str, as_json: bool) -> None:
    """Which policies and holds apply to MESSAGE-ID, and when it becomes deletable."""
    core = open_core(ctx, upgrade=False)
    with _backend(core) as backend, core.sessions() as session:
        found = explain(session, backend, message_id)
    if not found:
        raise CliError(f"no archived message has the Message-ID {message_id}")
    if as_json:
        click.echo(json.dumps([item.as_json() for item in found], indent=2))
        return
    for item in found:
        click.echo(
            f"<{item.message_id}> dated {item.date:%Y-%m-%d %H:%M} UTC, "
            f"received {item.received_at:%Y-%m-%d %H:%M} UTC"
        )
        click.echo(
            f"  retention counts from {item.counts_from:%Y-%m-%d %H:%M} UTC, {item.counted_by}"
        )
        if not item.policies:
            click.echo("  no policy matches it: it is kept forever")
        for name, keep, end in item.policies:
            click.echo(f"  policy {name} keeps it {keep}, until {end:%Y-%m-%d}")
        for name in item.holds:
            click.echo(f"  hold {name} covers it: it is not deleted while the hold lasts")
        if item.deletable_from is not None:
            click.echo(f"  deletable from {item.deletable_from:%Y-%m-%d}")
        if item.waiting_for_index:
            click.echo("  it waits for the indexer; sweeps skip it until then")


@retention.command("pause")
@click.pass_context
def retention_pause(ctx: click.Context) -> None:
    """Stop sweeps (one under way stops after its current batch) until `resume`."""
    core = open_core(ctx, upgrade=True)
    with core.sessions.begin() as session:
        set_paused(session, audit.cli_actor(), True)
    click.echo("retention sweeps paused")


@retention.command("resume")
@click.pass_context
def retention_resume(ctx: click.Context) -> None:
    """Let sweeps run again."""
    core = open_core(ctx, upgrade=True)
    with core.sessions.begin() as session:
        set_paused(session, audit.cli_actor(), False)
    click.echo("retention sweeps resumed")


@click.group()
def hold() -> None:
    """Legal holds: what no retention sweep may delete, until released."""


@hold.command("add")
@click.option("--name", required=True, help="A name to refer to the hold by.")
@click.option("--reason", required=True, help="Why: the matter or case.")
@click.option("--query", default=None, help="A search query the hold covers.")
@click.option(
    "--custodian", "custodians", multiple=True, help="An address whose mail it covers (repeat)."
)
@click.option(
    "--since",
    default=None,
    help="Only mail whose retention counts from this day or later (YYYY-MM-DD).",
)
@click.option(
    "--until",
    default=None,
    help="Only mail whose retention counts from this day or earlier (YYYY-MM-DD).",
)
@click.pass_context
def hold_add(
    ctx: click.Context,
    name: str,
    reason: str,
    query: str | None,
    custodians: tuple[str, ...],
    since: str | None,
    until: str | None,
) -> None:
    """Place a hold; it also covers matching mail that arrives later."""
    core = open_core(ctx, upgrade=True)
    with said_in_one_line(*MISTAKES), core.sessions.begin() as session:
        placed = add_hold(
            session,
            audit.cli_actor(),
            name,
            reason,
            query=query,
            custodians=custodians,
            since=_day(since, "--since"),
            until=_day(until, "--until"),
        )
        click.echo(f"hold {placed.name} placed")
    with _backend(core) as backend, core.sessions() as session:
        _say(hold_coverage(session, backend, placed).notes())


@hold.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@click.option("--all", "everything", is_flag=True, help="Released holds too.")
@click.pass_context
def hold_list(ctx: click.Context, as_json: bool, everything: bool) -> None:
    """The active holds (and released ones with --all)."""
    core = open_core(ctx, upgrade=False)
    with _backend(core) as backend, core.sessions() as session:
        found = holds(session, include_released=everything)
        covered = {
            item.name: hold_coverage(session, backend, item).messages
            for item in found
            if item.released_at is None
        }
    if as_json:
        click.echo(
            json.dumps(
                [{**describe_hold(item), "messages": covered.get(item.name)} for item in found],
                indent=2,
            )
        )
        return
    if not found:
        click.echo("no holds")
    for item in found:
        click.echo(_hold_line(item, covered.get(item.name)))


def _hold_line(item: LegalHold, covered: int | None) -> str:
    covers = [f"query {item.query!r}"] if item.query else []
    if item.custodians:
        covers.append("custodians " + ", ".join(item.custodians))
    if item.since or item.until:
        since = f"{item.since:%Y-%m-%d}" if item.since else "…"
        until = f"{item.until:%Y-%m-%d}" if item.until else "…"
        covers.append(f"dated {since} to {until}")
    if item.released_at:
        state = f"released {item.released_at:%Y-%m-%d}"
    else:
        state = f"active, covers {messages(covered or 0)}"
    return f"{item.name}\t{state}\t{item.reason}\t{'; '.join(covers)}"


@hold.command("release")
@click.argument("name")
@click.pass_context
def hold_release(ctx: click.Context, name: str) -> None:
    """Release hold NAME; what it alone kept may go at the next sweep."""
    core = open_core(ctx, upgrade=True)
    with said_in_one_line(*MISTAKES), core.sessions.begin() as session:
        release_hold(session, audit.cli_actor(), name)
    click.echo(f"hold {name} released")
