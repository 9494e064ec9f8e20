"""The durable spool between "250 OK" and the archive.

Accepted transactions are written in batches. The raw bytes of every message in a batch
are appended to the intake's current segment file and made durable with one `fdatasync`,
then the batch's spool rows (segment, offset, length, sha256) are committed in one
transaction. Only then does any of those clients hear 250. One sync and one commit per
batch instead of a new file, two fsyncs and a commit per message is what lets a durable
intake keep up with a bare SMTP sink; while a batch is being flushed, the next one fills.

A segment is created under a temporary name, locked, fsync'd, renamed and its directory
fsync'd before the first append, so its name is durable before any byte in it is
acknowledged. Bytes of a batch that failed are never referenced by a row (and a torn tail
after a crash is unreachable), so nothing half-stored is ever read. The intake holds an
exclusive `flock` on the segment it appends to; the worker deletes a segment only when no
row needs it and it can take that lock, i.e. once the intake has moved on or died.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from archiver.models import SpoolEntry
from archiver.store import fsync_directory

log = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".seg"
ORPHAN_AGE = timedelta(hours=1)
SEGMENT_MAX_BYTES = 64 * 1024 * 1024
SEGMENT_MAX_AGE = 60.0  # seconds: a segment this old is sealed so its space can be reclaimed
SPOOL_TABLE = SpoolEntry.__table__


class SpoolError(RuntimeError):
    """The spool could not make a batch durable; nothing of it may be acknowledged."""


class SpoolFullError(SpoolError):
    """The disk or the database is out of space (SMTP 452 rather than 451)."""


def new_queue_id() -> str:
    """A short, unique, roughly time-ordered id that names a message in every log line."""
    return f"{time.time_ns() // 1_000_000:011X}{secrets.token_hex(3).upper()}"


@dataclass(frozen=True)
class Incoming:
    """One accepted transaction, as the intake hands it to the spool."""

    queue_id: str
    envelope_from: str
    recipients: tuple[str, ...]
    data: bytes
    protocol: str
    peer: str
    received_at: datetime


class Spool:
    """Segment files under `directory` plus the `spool` table."""

    def __init__(self, directory: Path, sessions: sessionmaker[Session]) -> None:
        self.directory = directory
        self.sessions = sessions
        self.engine = sessions.kw["bind"]
        self._segment: _Segment | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def commit_batch(self, batch: list[Incoming]) -> None:
        """Make every message of `batch` durable, or raise with none of it acknowledged.

        Called by one flusher at a time (the group committer), never concurrently.
        """
        try:
            segment = self._writable_segment()
            rows = []
            offset = segment.size
            for item in batch:
                rows.append(_row(item, segment.name, offset))
                offset += len(item.data)
            segment.append(b"".join(item.data for item in batch))
        except OSError as exc:
            self._seal()  # after a failed write or sync the file's state is unknown
            raise _spool_error(exc) from exc
        try:
            # Core, not the ORM: this runs once per batch on the intake's critical path.
            with self.engine.begin() as connection:
                connection.execute(SPOOL_TABLE.insert(), rows)
        except Exception as exc:
            raise _spool_error(exc) from exc

    def close(self) -> None:
        """Seal the current segment (the worker may delete it once it is archived)."""
        self._seal()

    def _writable_segment(self) -> _Segment:
        segment = self._segment
        if segment is not None and not segment.full():
            return segment
        self._seal()
        self._segment = _Segment.create(self.directory)
        return self._segment

    def _seal(self) -> None:
        if self._segment is not None:
            self._segment.close()
            self._segment = None

    def read(self, entry: SpoolEntry) -> bytes:
        """The raw bytes of a spooled message, checked against the hash taken at intake."""
        with open(self.directory / entry.segment, "rb") as handle:
            handle.seek(entry.offset)
            data = handle.read(entry.length)
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            raise SpoolError(f"{entry.queue_id}: spooled bytes do not match their hash")
        return data

    def release(self, session: Session, segments: Iterable[str]) -> None:
        """Delete segment files that no waiting message needs and no intake appends to."""
        for segment in set(segments):
            waiting = session.scalar(
                select(func.count()).select_from(SpoolEntry).where(SpoolEntry.segment == segment)
            )
            if not waiting:
                _remove_unless_in_use(self.directory / segment)

    def sweep_orphans(self) -> int:
        """Remove segments left with nothing to archive (by crashes, or while idle).

        A segment an intake still holds is skipped; a temporary file is removed only when it
        is an hour old, since a younger one may be a segment being created right now.
        """
        cutoff = time.time() - ORPHAN_AGE.total_seconds()
        with self.sessions() as session:
            live = set(session.scalars(select(SpoolEntry.segment).distinct()))
        removed = 0
        for path in self.directory.iterdir():
            if path.name.endswith(".tmp"):
                if path.stat().st_mtime < cutoff:
                    path.unlink(missing_ok=True)
                    removed += 1
            elif path.name not in live and _remove_unless_in_use(path):
                removed += 1
        return removed

    def pending(self, session: Session) -> int:
        """How many accepted messages are not archived yet."""
        return session.scalar(select(func.count()).select_from(SpoolEntry)) or 0

    @staticmethod
    def finish(session: Session, entry_ids: Iterable[int]) -> None:
        """Remove spool rows whose messages are now archived (inside the archiving transaction)."""
        session.execute(delete(SpoolEntry).where(SpoolEntry.id.in_(list(entry_ids))))


class _Segment:
    """The append-only file an intake process writes, locked while it is in use."""

    def __init__(self, directory: Path, name: str, fd: int) -> None:
        self.directory = directory
        self.name = name
        self.fd = fd
        self.size = 0
        self.opened = time.monotonic()

    @classmethod
    def create(cls, directory: Path) -> _Segment:
        """A new, empty, locked segment whose name is already durable."""
        name = f"{time.time_ns()}-{os.getpid()}{SEGMENT_SUFFIX}"
        temp = directory / f".{name}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.fsync(fd)
            os.rename(temp, directory / name)
            fsync_directory(directory)
        except BaseException:
            os.close(fd)
            temp.unlink(missing_ok=True)
            raise
        return cls(directory, name, fd)

    def full(self) -> bool:
        """Time to start a new segment, so finished ones can be deleted."""
        too_old = time.monotonic() - self.opened > SEGMENT_MAX_AGE
        return self.size >= SEGMENT_MAX_BYTES or too_old

    def append(self, data: bytes) -> None:
        """Append and make durable; the file size grows only once the data is synced."""
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        os.fdatasync(self.fd)
        if os.fstat(self.fd).st_nlink == 0:  # deleted under us: the bytes would be unreachable
            raise FileNotFoundError(errno.ENOENT, "spool segment was removed", self.name)
        self.size += len(data)

    def close(self) -> None:
        """Stop appending; closing also releases the lock."""
        os.close(self.fd)


def _remove_unless_in_use(path: Path) -> bool:
    """Unlink a segment unless an intake holds its lock; True when it was removed."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        path.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


def _row(item: Incoming, segment: str, offset: int) -> dict[str, object]:
    return {
        "queue_id": item.queue_id,
        "segment": segment,
        "offset": offset,
        "length": len(item.data),
        "sha256": hashlib.sha256(item.data).hexdigest(),
        "envelope_from": item.envelope_from,
        "recipients": list(item.recipients),
        "protocol": item.protocol,
        "peer": item.peer,
        "received_at": item.received_at,
        "attempts": 0,
        "next_attempt_at": item.received_at,
    }


def _spool_error(exc: Exception) -> SpoolError:
    text = str(exc).lower()
    if getattr(exc, "errno", None) in {28, 122} or "full" in text or "no space" in text:
        return SpoolFullError(str(exc))
    return SpoolError(str(exc))


class GroupCommitter:
    """Collects accepted messages from all sessions and flushes them in batches.

    A single flusher runs at a time in a worker thread; every message that arrives while it
    runs waits for the next flush, so the batch size grows with the load by itself and no
    timer adds latency when the intake is idle.
    """

    def __init__(self, spool: Spool, max_batch: int = 512) -> None:
        self.spool = spool
        self.max_batch = max_batch
        self._waiting: list[tuple[Incoming, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.on_commit: list[Callable[[], None]] = []

    async def submit(self, item: Incoming) -> None:
        """Return once `item` is durable; raise `SpoolError` if it could not be made so."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await future

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            batch = self._waiting[: self.max_batch]
            del self._waiting[: self.max_batch]
            try:
                await loop.run_in_executor(None, self.spool.commit_batch, [i for i, _ in batch])
            except Exception as exc:
                log.error("spool batch of %d failed: %s", len(batch), exc)
                error = exc if isinstance(exc, SpoolError) else SpoolError(str(exc))
                for _item, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for _item, future in batch:
                if not future.done():
                    future.set_result(None)
            for callback in self.on_commit:
                callback()
