"""`arsip subject erase` and `arsip subject requests`: a data subject's erasure requests.

`archiver.subject_cli` puts them in the `subject` group beside `export`. Every act is
audited with the operating-system user as its actor; the command line stays English.
"""

from __future__ import annotations

import json

import click

from archiver import audit
from archiver.clikit import CliError, open_core
from archiver.erasure.eraser import Eraser, ErasureError, ErasureReport, requests
from archiver.erasure.models import ErasureRequest
from archiver.erasure.verdicts import Kind, Verdict
from archiver.plural import plural

VERBS = {
    Kind.ERASE: ("erased", "would erase"),
    Kind.HELD: ("kept", "would keep"),
    Kind.RETAINED: ("kept", "would keep"),
    Kind.WAITING: ("waiting", "would wait"),
}


@click.command("erase")
@click.argument("address")
@click.option("--dry-run", is_flag=True, help="Say what would be erased and kept; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="The verdicts and totals as JSON.")
@click.pass_context
def subject_erase(ctx: click.Context, address: str, dry_run: bool, as_json: bool) -> None:
    """Erase the mail ADDRESS appears in (any role) that may go; keep, and say why, what a
    legal hold or a retention policy must keep; the request is remembered and the kept
    mail erased once it may go. Mail archived after the request is not covered."""
    core = open_core(ctx, upgrade=not dry_run)
    listed: list[Verdict] = []

    def say(verdict: Verdict) -> None:
        if as_json:
            listed.append(verdict)
        else:
            click.echo(_verdict_line(verdict, dry_run))

    backend = core.search_backend()
    try:
        eraser = Eraser(core.sessions, core.store, backend, actor=audit.cli_actor())
        report = eraser.request(address, dry_run=dry_run, on_verdict=say)
    except ErasureError as exc:
        raise CliError(str(exc)) from exc
    finally:
        backend.close()
    if as_json:
        document = report.as_json()
        document["messages"] = [verdict.as_json() for verdict in listed]
        click.echo(json.dumps(document, indent=2))
        return
    for line in _summary(report):
        click.echo(line)


def _verdict_line(verdict: Verdict, dry_run: bool) -> str:
    verb = VERBS[verdict.kind][dry_run]
    reason = verdict.reason()
    return f"{verb}\t{verdict.date:%Y-%m-%d}\t<{verdict.message_id}>" + (
        f"\t{reason}" if reason else ""
    )


def _summary(report: ErasureReport) -> list[str]:
    counts = report.counts
    erased = counts[Kind.ERASE] if report.dry_run else report.erased
    verb = "would erase" if report.dry_run else "erased"
    lines = [
        f"{report.address}: {verb} {plural(erased, 'message')}; "
        f"{counts[Kind.HELD]} kept by holds, {counts[Kind.RETAINED]} by retention policies"
        + (f", {counts[Kind.WAITING]} wait for the indexer" if counts[Kind.WAITING] else "")
    ]
    if report.later:
        lines.append(
            f"{plural(report.later, 'message')} archived after the request "
            "are not covered: a new request erases them once this one is done"
        )
    if report.dry_run:
        lines.append("dry run: nothing was changed")
    elif report.done:
        lines.append(f"request {report.request} is done: nothing it covers is left")
    else:
        lines.append(
            f"request {report.request} stays open: the kept messages are erased once their "
            "hold is released or their period ends (after each retention sweep)"
        )
    return lines


@click.command("requests")
@click.option("--open", "only_open", is_flag=True, help="Only the requests still open.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@click.pass_context
def subject_requests(ctx: click.Context, only_open: bool, as_json: bool) -> None:
    """The erasure requests, newest first: open ones wait for mail a hold or a retention
    policy still keeps."""
    core = open_core(ctx, upgrade=False)
    with core.sessions() as session:
        found = [_request_json(item) for item in requests(session, only_open)]
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        click.echo("no open erasure requests" if only_open else "no erasure requests")
    for item in found:
        click.echo(
            f"{item['id']}\t{item['status']}\t{item['address']}\t"
            f"requested {item['requested_at'][:10]} by {item['requested_by']}\t"
            f"{item['erased']} erased, {item['held']} held, {item['retained']} retained"
            + (f", {item['waiting']} waiting" if item["waiting"] else "")
        )


def _request_json(item: ErasureRequest) -> dict[str, object]:
    return {
        "id": item.id,
        "address": item.address,
        "status": item.status,
        "requested_at": item.requested_at.isoformat(),
        "requested_by": item.requested_by,
        "erased": item.erased,
        "held": item.held,
        "retained": item.retained,
        "waiting": item.waiting,
        "last_run_at": item.last_run_at.isoformat() if item.last_run_at else None,
        "done_at": item.done_at.isoformat() if item.done_at else None,
    }
