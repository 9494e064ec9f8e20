"""Productions the web UI writes in the background, and how any web process tells a
running one from one whose process died.

A case's production takes far longer than a request may, so the case page starts it in a
thread of the web process and answers once it has begun (or failed to). While it writes,
the thread holds an exclusive lock (`flock`) on a small file beside the production's
folder, `FOLDER.run`, and keeps its progress there ("123 of 456 messages"). Every web
process (there may be several) reads the same file: a production the database calls
unfinished whose lock nobody holds was interrupted (the process died, or the run failed),
and running it again into the same folder carries it on (`archiver.production.run`).
The lock is the kernel's, so it goes with the process that held it; on several machines
the productions folder must be on a file system whose locks all of them see.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from archiver.core import Core
from archiver.production.run import ProgressCallback, Summary

log = logging.getLogger(__name__)

RUN_SUFFIX = ".run"
# How long a request waits to see a production begin writing or fail, so that what goes
# wrong at once (a refused prefix, nothing to produce) is said on the page
START_WAIT = 30.0

# Writes one production, telling the progress callback it is given as it goes
Writer = Callable[[ProgressCallback], Summary]


class AlreadyRunning(Exception):
    """Another thread or process is writing this production now."""


@dataclass(frozen=True)
class RunState:
    """How a production the web UI writes stands: whether a process is writing it, its
    last progress (messages done of the total), and why its last run stopped, if it
    failed."""

    running: bool
    done: int | None = None
    total: int | None = None
    error: str | None = None


def case_folder(core: Core, case_name: str) -> Path:
    """Where the web UI writes the productions of case `case_name` (case names are
    letters, digits, `.`, `_` and `-`: safe as a folder's name)."""
    return (core.settings.productions_dir / f"case-{case_name}").resolve()


def new_folder(parent: Path) -> Path:
    """A fresh, timestamped folder name under `parent` for a new production; its run
    file is made here, so two productions started in the same second differ."""
    parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d-%H%M%S")
    for attempt in range(1, 1000):
        folder = parent / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            os.close(os.open(run_file(folder), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            continue
        return folder
    raise AlreadyRunning(f"no free folder name under {parent}")


def run_file(folder: Path) -> Path:
    """The lock and progress file of the production written into `folder`."""
    return folder.with_name(folder.name + RUN_SUFFIX)


def run_state(folder: Path) -> RunState:
    """How the production in `folder` stands, as its run file says."""
    try:
        handle = os.open(run_file(folder), os.O_RDONLY)
    except OSError:
        return RunState(running=False)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            running = False
        except BlockingIOError:
            running = True
        data = _report(os.pread(handle, 4096, 0))
    finally:
        os.close(handle)
    return RunState(running, data.get("done"), data.get("total"), data.get("error"))


def start(folder: Path, write: Writer) -> Exception | None:
    """Run `write` in a background thread, holding `folder`'s lock, and wait until it has
    written its first message or ended. The error it ended with, if it failed by then.
    `AlreadyRunning` when the production is being written already."""
    lock = _Lock(run_file(folder))
    begun = threading.Event()
    failures: list[Exception] = []

    def progress(done: int, total: int) -> None:
        lock.report({"done": done, "total": total})
        begun.set()

    def work() -> None:
        try:
            write(progress)
        except Exception as exc:  # a thread has no one else to tell: log and keep it
            log.exception("production into %s stopped", folder)
            lock.report({**lock.last, "error": str(exc)})
            failures.append(exc)
        finally:
            lock.close()
            begun.set()

    lock.report({})
    threading.Thread(target=work, name=f"production {folder.name}", daemon=True).start()
    begun.wait(START_WAIT)
    return failures[0] if failures else None


class _Lock:
    """The exclusive lock on a run file, and the progress written into it."""

    def __init__(self, path: Path) -> None:
        self.handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self.last: dict[str, object] = {}
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.handle)
            raise AlreadyRunning(str(path)) from None

    def report(self, data: dict[str, object]) -> None:
        """Replace what the run file says with `data`."""
        self.last = data
        encoded = json.dumps(data).encode()
        os.pwrite(self.handle, encoded, 0)
        os.ftruncate(self.handle, len(encoded))

    def close(self) -> None:
        """Release the lock: the production is no longer being written."""
        os.close(self.handle)


def _report(data: bytes) -> dict:
    """The run file's progress; nothing for a file caught mid-write or empty."""
    try:
        found = json.loads(data or b"{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
