"""`arsip timestamps ...`, and the part of `arsip verify --timestamps` that is theirs.

`list` shows the tokens and what waits; `stamp` asks the TSA now for everything that
waits, pauses or not; `export DIR` writes each token (`NAME.tsr`, DER as the TSA sent
it) beside the line it covers (`NAME.txt`), the two files `openssl ts -verify -in NAME.tsr
-data NAME.txt -CAfile CA.pem` needs. Exporting and stamping by hand are audited.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from sqlalchemy import select

from archiver import audit
from archiver.clikit import CliError, check_output, open_core, output_errors, settings_of
from archiver.plural import plural
from archiver.timestamps.models import STAMPED, TimestampToken, current_record
from archiver.timestamps.tsa import TimestampError, load_ca

if TYPE_CHECKING:
    from cryptography import x509

    from archiver.core import Core
    from archiver.timestamps.checking import StampReport


@click.group(name="timestamps")
def timestamps_group() -> None:
    """Trusted timestamps (RFC 3161) of the ledger's seals and the audit log's head."""


@timestamps_group.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines: one object per token.")
@click.option(
    "--limit",
    default=100,
    show_default=True,
    type=click.IntRange(0),
    help="How many, newest first (0: all).",
)
@click.pass_context
def list_tokens(ctx: click.Context, as_json: bool, limit: int) -> None:
    """Show the tokens and the evidence waiting for one, newest first."""
    core = open_core(ctx, upgrade=False)
    query = select(TimestampToken).order_by(TimestampToken.id.desc())
    with core.sessions() as session:
        for row in session.scalars(query.limit(limit) if limit else query):
            click.echo(json.dumps(_as_json(row)) if as_json else _line(row))


def _as_json(row: TimestampToken) -> dict[str, Any]:
    return {
        "kind": row.kind,
        "key": row.key,
        "status": row.status,
        "imprint": row.imprint,
        "gen_time": row.gen_time.isoformat() if row.gen_time else None,
        "tsa": row.tsa or None,
        "created_at": row.created_at.isoformat(),
        "attempts": row.attempts,
        "next_attempt_at": row.next_attempt_at.isoformat() if row.next_attempt_at else None,
        "last_error": row.last_error,
    }


def _line(row: TimestampToken) -> str:
    if row.status == STAMPED and row.gen_time is not None:
        return f"{row.name:32} stamped {row.gen_time.isoformat()} by {row.tsa}"
    when = row.next_attempt_at.isoformat() if row.next_attempt_at else "-"
    tried = f"; {plural(row.attempts, 'attempt')}, last error: {row.last_error}"
    return f"{row.name:32} waiting, next try {when}" + (tried if row.attempts else "")


@timestamps_group.command(name="stamp")
@click.pass_context
def stamp_command(ctx: click.Context) -> None:
    """Ask the TSA now for tokens on every seal and audit head that waits for one; exit 1
    if it failed (they stay waiting)."""
    from archiver.timestamps.stamping import stamp_waiting

    if not settings_of(ctx).tsa_url:
        raise CliError("no Time-Stamp Authority is configured: set ARSIP_TSA_URL")
    core = open_core(ctx, upgrade=True)
    run = stamp_waiting(core.settings, core.sessions, audit.cli_actor(), everything=True)
    click.echo(f"stamped {plural(run.stamped, 'token')}; {run.waiting} waiting")
    if run.error is not None:
        raise CliError(f"the TSA failed: {run.error}")


@timestamps_group.command(name="export")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@click.pass_context
def export_tokens(ctx: click.Context, folder: Path) -> None:
    """Write each token as FOLDER/NAME.tsr and the line it covers as FOLDER/NAME.txt, for
    `openssl ts -verify` (the folder is made if it does not exist)."""
    check_output(folder)
    core = open_core(ctx, upgrade=False)
    written = 0
    with output_errors(folder):
        folder.mkdir(exist_ok=True)
        with core.sessions.begin() as session:
            rows = session.scalars(
                select(TimestampToken)
                .where(TimestampToken.status == STAMPED)
                .order_by(TimestampToken.id)
            )
            for row in rows:
                covered = current_record(session, row.kind, row.key)
                if row.token is None or covered is None:
                    click.echo(f"skipped {row.name}: the evidence it covers is gone", err=True)
                    continue
                (folder / f"{row.name}.tsr").write_bytes(row.token)
                (folder / f"{row.name}.txt").write_bytes(covered)
                written += 1
            audit.record(
                session, audit.cli_actor(), "timestamp.export", str(folder), {"tokens": written}
            )
    click.echo(f"wrote {plural(written, 'token')} to {folder}")


def bundle_for_verify(ctx: click.Context) -> list[x509.Certificate]:
    """The CA bundle `arsip verify --timestamps` checks against, before any work."""
    path = settings_of(ctx).tsa_ca
    if path is None:
        raise CliError("--timestamps needs the TSA's CA bundle: set ARSIP_TSA_CA to its PEM file")
    try:
        return load_ca(path)
    except TimestampError as exc:
        raise CliError(f"ARSIP_TSA_CA: {exc}") from exc


def check_timestamps(core: Core, ca: list[x509.Certificate]) -> StampReport:
    """Check every token offline, with a progress bar."""
    from tqdm import tqdm

    from archiver.timestamps.checking import check_tokens, count_tokens

    with core.sessions() as session:
        total = count_tokens(session)
        with tqdm(total=total, unit="token", desc="timestamps", disable=None) as bar:
            return check_tokens(session, ca, on_token=bar.update)


def print_report(report: StampReport) -> None:
    """What `arsip verify --timestamps` prints of the tokens, problems first."""
    for found in report.problems:
        click.echo(f"bad timestamp {found.name}: {found.problem}")
    if report.unstamped:
        days = report.unstamped
        span = days[0] if len(days) == 1 else f"{days[0]} .. {days[-1]}"
        click.echo(f"not stamped yet: {plural(len(days), 'sealed day')} ({span})")
    head = f"; audit log stamped up to entry {report.newest_head}" if report.newest_head else ""
    click.echo(
        f"checked {plural(report.checked, 'timestamp token')}: "
        f"{len(report.problems)} bad, {report.waiting} waiting for the TSA{head}"
    )
