"""The `arsip` command run inside the test process, answering as `subprocess.run` would.

A test that ran `arsip …` as a process started a Python that imported SQLAlchemy and the
command's modules anew: 0.5-1 s of CPU each time, hundreds of times a run. Where no
process boundary is under test, the tests run the same command here instead: the real
`arsip` group (what the console script `archiver.cli:main` runs, plug-in groups
included), with the environment, working directory and standard input a process would
have had, and its exit status, stdout and stderr handed back in a CompletedProcess. An
exception the command does not handle is printed to stderr, as Python would print it,
with status 1, so a test that says "no traceback" still sees one.

What a command sets up for the whole process (the root logger's handlers and the
libraries' levels) is put back afterwards, so one command cannot change how the next
test logs. Tests of the entry point itself (the console script, imports it must not
make, a process that must not outlive its parent) keep running `arsip` as a process.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path

from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent

# The loggers whose levels `archiver.logs.configure_logging` sets, besides the root.
CONFIGURED_LOGGERS = ("", "mail.log", "pypdf", "alembic", "apscheduler")


@contextlib.contextmanager
def _logging_kept() -> Iterator[None]:
    """Put the root logger's handlers and the configured loggers' levels back as they were."""
    root = logging.getLogger()
    handlers = root.handlers[:]
    levels = {name: logging.getLogger(name).level for name in CONFIGURED_LOGGERS}
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def run_arsip_here(
    args: list[str] | tuple[str, ...],
    env: Mapping[str, str | None] | None = None,
    stdin: str | None = None,
    check: bool = False,
    cwd: Path = ROOT,
) -> subprocess.CompletedProcess[str]:
    """Run `arsip ARGS` in `cwd` in this process, with `env` over the process environment
    (None unsets a variable) and `stdin` as its input; the answer is subprocess.run's
    (`check` raises as it would)."""
    from archiver.cli import cli

    runner = CliRunner(env=dict(env or {}))
    with contextlib.chdir(cwd), _logging_kept():
        result = runner.invoke(cli, list(args), input=stdin, prog_name="arsip")
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    done = subprocess.CompletedProcess(["arsip", *args], result.exit_code, result.stdout, stderr)
    if check:
        done.check_returncode()
    return done
