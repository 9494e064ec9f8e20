"""What every command that writes a production shares: its options, its progress bar,
and its one-line errors. `arsip subject export` (`archiver.production.subject_cli`) and
`arsip case export` (`archiver.cases.cli`) are each a few lines on top of them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from archiver.clikit import CliError
from archiver.core import Core
from archiver.languages import TextError
from archiver.plural import plural
from archiver.production.errors import ProductionError
from archiver.production.manifest import TOKEN_NAME
from archiver.production.plan import Dedupe
from archiver.production.run import Format, ProgressCallback, Summary

F = TypeVar("F", bound=Callable[..., Any])
INTERRUPTED = 130  # the exit status of a command stopped with Ctrl-C


def production_options(dedupe: bool = False) -> Callable[[F], F]:
    """--output, --prefix and --format (and --dedupe, for productions of several
    custodians) for a command that writes a production."""

    def add(command: F) -> F:
        if dedupe:
            command = click.option(
                "--dedupe",
                type=click.Choice([mode.value for mode in Dedupe]),
                default=Dedupe.NONE.value,
                show_default=True,
                help="Produce a message collected for several custodians once per "
                "custodian (custodian), once in all (global), or every time (none).",
            )(command)
        command = click.option(
            "--format",
            "format_",
            type=click.Choice([mode.value for mode in Format]),
            default=Format.NATIVE.value,
            show_default=True,
            help="Each message as an .eml file (native), or all in one mbox.",
        )(command)
        command = click.option(
            "--prefix",
            help="The control numbers' prefix (ABC gives ABC0000001); a series keeps the "
            "prefix of its first production.",
        )(command)
        return click.option(
            "--output",
            "-o",
            required=True,
            type=click.Path(path_type=Path),
            help="The folder to write: empty or missing, or this production interrupted.",
        )(command)

    return add


def produce_command(
    ctx: click.Context, core: Core, output: Path, write: Callable[[ProgressCallback], Summary]
) -> Summary:
    """Write a production into `output` with `write` (`produce`, or what calls it), with
    a progress bar on a terminal, and say what was written. Mistakes end in one line;
    Ctrl-C says how to carry on."""
    from tqdm import tqdm

    with tqdm(unit="msg", desc="production", disable=None) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            summary = write(progress)
        except (ProductionError, TextError) as exc:
            raise CliError(str(exc)) from exc
        except OSError as exc:
            raise CliError(f"cannot write {output}: {exc.strerror or exc}") from exc
        except KeyboardInterrupt:
            bar.close()
            click.echo(
                f"interrupted: {output} holds no finished production; run the same "
                "command again to carry on where it stopped",
                err=True,
            )
            ctx.exit(INTERRUPTED)
    click.echo(
        f"{'finished' if summary.resumed else 'wrote'} production {summary.id} of "
        f"{summary.series}: {summary.first} to {summary.last} "
        f"({plural(summary.messages, 'message')}, {plural(summary.attachments, 'attachment')}, "
        f"{plural(summary.files, 'file')}) in {summary.output}"
    )
    click.echo(f"manifest sha256 {summary.manifest_sha256}")
    if summary.stamped:
        click.echo(f"manifest timestamped by the TSA: {TOKEN_NAME}")
    elif core.settings.tsa_url:
        click.echo("manifest not timestamped: the TSA did not answer (see the log)", err=True)
    return summary
