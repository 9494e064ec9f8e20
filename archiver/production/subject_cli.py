"""`arsip subject export`: a data-subject access request (GDPR Art. 15) as a production.

`archiver.subject_cli` puts it in the `subject` group. An export is a production
(`archiver.production.run`) of every message the address appears in; its control numbers
run on across the exports of that address (series `subject:ADDRESS`).
"""

from __future__ import annotations

from pathlib import Path

import click

from archiver.audit import cli_actor, record
from archiver.clikit import CliError, open_core
from archiver.production.cli import produce_command, production_options
from archiver.production.errors import ProductionError
from archiver.production.plan import Collected
from archiver.production.run import Format, Request, produce
from archiver.production.subjects import checked_address, subject_messages, subject_series


@click.command(name="export")
@click.argument("address")
@production_options()
@click.pass_context
def export(
    ctx: click.Context, address: str, output: Path, prefix: str | None, format_: str
) -> None:
    """Write every message in which ADDRESS appears, in any role (From, To, Cc, Bcc,
    Reply-To, the envelope of journal copies), as a production: natives, text, load files
    and a manifest in the folder --output. Audited as subject.export."""
    try:
        wanted = checked_address(address)
    except ProductionError as exc:
        raise click.BadParameter(str(exc), param_hint="ADDRESS") from None
    core = open_core(ctx, upgrade=True)
    with core.sessions() as session:
        pks = subject_messages(session, wanted)
    if not pks:
        raise CliError(
            f"no archived message names {wanted} (in any role, envelope included): "
            "nothing to export"
        )
    actor = cli_actor()
    request = Request(subject_series(wanted), output, actor, prefix, Format(format_))
    collected = [Collected(pk, (wanted,)) for pk in pks]
    summary = produce_command(
        ctx, core, output, lambda progress: produce(core, request, collected, progress)
    )
    with core.sessions.begin() as session:
        record(session, actor, "subject.export", wanted, summary.audited())
