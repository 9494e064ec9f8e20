"""Outages for the reliability suite: a PostgreSQL server of the test's own, a small
filesystem that can fill up, a whoosh index whose lock a test holds, and a client that
keeps sending mail and remembers every reply."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import shutil
import smtplib
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from archiver.models import Message
from tests.support import JOURNAL, RunningService, free_ports, simple_message


def _postgres_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on a loopback port that this test alone may stop
    and start (the shared server of `tests/with-postgres.sh` serves every other test)."""

    def __init__(self) -> None:
        bindir = _postgres_bindir()
        if bindir is None or shutil.which("runuser") is None:
            pytest.skip("PostgreSQL binaries (Debian's postgresql) or runuser are missing")
        self.bindir = bindir
        self.port = free_ports(1)[0]
        self.root = Path(tempfile.mkdtemp(prefix="arsip-pg-outage."))
        shutil.chown(self.root, "postgres", "postgres")
        self.data = self.root / "data"
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, program: str, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bindir / program), *args],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=100"
        )
        log = str(self.root / "server.log")
        self._pg("pg_ctl", "-D", str(self.data), "-l", log, "-w", "-o", options, "start")

    def stop(self) -> None:
        """Stop the server as an operator would in a hurry: running sessions are cut off."""
        self._pg("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@contextlib.contextmanager
def small_filesystem(mountpoint: Path, size: str = "48m") -> Iterator[Path]:
    """A tmpfs of its own at `mountpoint`, so that it can be filled without touching
    anyone else's disk."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


def fill(directory: Path) -> Path:
    """Write one file in `directory` until the filesystem has no room left; returns it."""
    filler = directory / "filler"
    chunk = b"\0" * (1024 * 1024)
    with open(filler, "wb", buffering=0) as out:
        while True:
            try:
                out.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    # The last megabyte may have gone in partly; top up what is left, a block at a time.
    with open(filler, "ab", buffering=0) as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 4096)
    return filler


@contextlib.contextmanager
def index_write_lock(index_dir: Path) -> Iterator[None]:
    """Hold whoosh's writer lock on the index under `index_dir`, as a stuck writer would."""
    (lock_path,) = index_dir.glob("v*/MAIN_WRITELOCK") or [
        sorted(index_dir.glob("v*"))[-1] / "MAIN_WRITELOCK"
    ]
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass
class Reply:
    """What the intake said to one message, and when the client began and finished."""

    message_id: str
    code: int
    started: float
    finished: float


def send(service: RunningService, message_id: str, subject: str, body: str = "") -> Reply:
    """Send one journal copy on a connection of its own; any failure is a reply too (a
    connection that breaks is code 0), as it would be for a sending MTA."""
    started = time.monotonic()
    data = simple_message(message_id, subject=subject, body=body or "Hello Bob,\r\n")
    try:
        with smtplib.SMTP("127.0.0.1", service.smtp_port, timeout=60) as client:
            client.ehlo("outage.test")
            code, _ = client.mail("alice@example.com")
            if code == 250:
                code, _ = client.rcpt(JOURNAL)
            if code == 250:
                code, _ = client.data(data)
    except smtplib.SMTPResponseException as exc:
        code = exc.smtp_code
    except (OSError, smtplib.SMTPException):
        code = 0
    return Reply(message_id, code, started, time.monotonic())


class MailPump:
    """Sends journal copies one after another in a thread until stopped."""

    def __init__(self, service: RunningService, tag: str) -> None:
        self.service = service
        self.tag = tag
        self.replies: list[Reply] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mail-pump", daemon=True)
        self._changed = threading.Condition()

    def __enter__(self) -> MailPump:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def _run(self) -> None:
        number = 0
        while not self._stop.is_set():
            number += 1
            reply = send(self.service, f"{self.tag}-{number}@outage.test", f"{self.tag} {number}")
            with self._changed:
                self.replies.append(reply)
                self._changed.notify_all()
            self._stop.wait(0.02)

    def wait_for(self, wanted: str, count: int, since: float, timeout: float = 60) -> None:
        """Wait until `count` messages begun after `since` got an answer of class `wanted`
        ("2" or "4")."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [
                    r for r in self.replies if r.started >= since and str(r.code).startswith(wanted)
                ]
                if len(found) >= count:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{len(found)} of {count} {wanted}xx replies; codes since: "
                        f"{[r.code for r in self.replies if r.started >= since]}"
                    )
                self._changed.wait(left)

    def snapshot(self) -> list[Reply]:
        with self._changed:
            return list(self.replies)


def archived_ids(service: RunningService, message_ids: list[str]) -> set[str]:
    """Which of `message_ids` are in the archive."""
    found: set[str] = set()
    with service.core().sessions() as session:
        for start in range(0, len(message_ids), 500):
            chunk = message_ids[start : start + 500]
            found.update(
                session.scalars(select(Message.message_id).where(Message.message_id.in_(chunk)))
            )
    return found
