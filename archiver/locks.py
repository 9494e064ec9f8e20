"""Locks that keep a deployment's processes out of each other's way.

Two kinds, both PostgreSQL advisory locks, because the database is the one thing every
process of a deployment shares (a blob directory on NFS makes a poor place for locks):

- `transaction_lock`: serialises one kind of write until the transaction ends (archiving
  a batch, a confirmation request for one address). Nothing is left behind by a crash.
- `ProcessLock`: held by one process for as long as it lives, on a connection of its own:
  the scheduler that runs the deployment's jobs, the one whoosh writer. PostgreSQL frees
  it the moment that connection closes, so a process killed with `kill -9` hands the lock
  to the next candidate within a poll.

SQLite allows one `arsip serve` per database (`ServeLock`, a file lock beside the
database file), so there every process lock is held by that one service.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

# Process locks use PostgreSQL's two-key form, (NAMESPACE, number), so that `pg_locks`
# shows them as (classid, objid) and `holder()` can say who has one.
NAMESPACE = 0x41525350  # "ARSP"
PROCESS_LOCKS = {"scheduler": 1, "whoosh-writer": 2}
# libpq options for a lock's connection: a holder cut off from the database must notice
# (and stop its jobs) in seconds, before the server's own keepalives let another take
# over; without them a check on a dead network can hang for many minutes.
DEAD_PEER = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,  # milliseconds
}


def transaction_lock(session: Session, key: str) -> None:
    """Wait for, then hold until the end of the transaction, the lock named `key`.

    SQLite needs nothing: its single writer lock already serialises every writing
    transaction.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})


def process_label(role: str, pid: int | None = None) -> str:
    """How a process names itself to PostgreSQL (`application_name`) and in messages:
    the PID is the `arsip serve` one (systemd's main PID), whichever of its processes
    holds the connection."""
    return f"arsip {role} {socket.gethostname()}:{pid or os.getpid()}"


class ProcessLock(Protocol):
    """A lock one process of the deployment holds while it lives."""

    def acquire(self) -> bool:
        """Take the lock if it is free; whether this process holds it now."""
        ...

    def still_held(self) -> bool:
        """Whether this process still holds it (a lost connection loses the lock)."""
        ...

    def holder(self) -> str:
        """Who holds it, for a message ("" when unknown or free)."""
        ...

    def release(self) -> None:
        """Give it up (closing the connection, which also ends a lock it had)."""
        ...


def process_lock(engine: Engine, name: str, label: str) -> ProcessLock:
    """The lock `name` (a key of `PROCESS_LOCKS`), held under `label` (`process_label`)."""
    if engine.dialect.name == "postgresql":
        return AdvisoryLock(engine, name, label)
    return ServiceWide()


def lock_holder(session: Session, name: str) -> str | None:
    """Who holds the process lock `name` now: its `process_label`, "" when nobody does,
    None on SQLite (where the one `arsip serve` holds them all)."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    return holder_of(session.connection(), PROCESS_LOCKS[name])


def holder_of(connection: Connection, number: int) -> str:
    """The `application_name` of the session holding process lock `number` ("" if free).

    Advisory locks belong to a database, and `pg_locks` lists those of every database on
    the server: another archive on the same server holds a lock of the same number.
    """
    found = connection.scalar(
        text(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND l.classid = :space AND l.objid = :number AND l.objsubid = 2"
        ),
        {"space": NAMESPACE, "number": number},
    )
    return found or ""


class ServiceWide:
    """On SQLite one `arsip serve` owns the database (see `ServeLock`), and with it every
    lock: whichever of its processes asks holds it."""

    def acquire(self) -> bool:
        return True

    def still_held(self) -> bool:
        return True

    def holder(self) -> str:
        return ""

    def release(self) -> None:
        return None


class AdvisoryLock:
    """A session-level PostgreSQL advisory lock on a connection kept for it alone."""

    def __init__(self, engine: Engine, name: str, label: str) -> None:
        self.number = PROCESS_LOCKS[name]
        # Its own engine: a pooled connection could be recycled or pinged away, and the
        # lock with it, without anyone noticing.
        self._engine = create_engine(
            engine.url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={"application_name": label[:63], **DEAD_PEER},
        )
        self._connection: Connection | None = None

    def acquire(self) -> bool:
        if self._connection is not None:
            return self.still_held()
        try:
            connection = self._engine.connect()
        except DBAPIError:
            return False
        taken = connection.scalar(
            text("SELECT pg_try_advisory_lock(:space, :number)"),
            {"space": NAMESPACE, "number": self.number},
        )
        if taken:
            self._connection = connection
        else:
            connection.close()
        return bool(taken)

    def still_held(self) -> bool:
        if self._connection is None:
            return False
        try:
            self._connection.execute(text("SELECT 1"))
        except DBAPIError:
            self.release()
            return False
        return True

    def holder(self) -> str:
        try:
            with self._engine.connect() as connection:
                return holder_of(connection, self.number)
        except DBAPIError:
            return ""

    def release(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(DBAPIError):  # a dead one has released its locks
                self._connection.close()
            self._connection = None

    def close(self) -> None:
        """Release the lock and the engine behind it."""
        self.release()
        self._engine.dispose()


class ServeLockedError(RuntimeError):
    """Another `arsip serve` runs on this SQLite database."""


class ServeLock:
    """One `arsip serve` per SQLite database: an exclusive `flock` on a file beside it.

    The kernel drops the lock when the process dies, however it dies, so a stale file
    never blocks a restart. The file holds the owner's PID for the error message.
    """

    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + ".serve-lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise `ServeLockedError` naming the process that has it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ServeLockedError(
                f"another `arsip serve` (pid {owner}) uses the SQLite database {self.path.parent}"
                f"/{self.path.name.removesuffix('.serve-lock')}; several processes need"
                " PostgreSQL (ARSIP_DATABASE_URL)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def in_use(self) -> bool:
        """Whether an `arsip serve` holds the lock now (another process, or this one)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # refused while one holds it
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
