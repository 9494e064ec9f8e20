"""The durable spool between "250 OK" and the archive.

Accepted transactions are written in batches: the raw bytes of every message in a batch go
into one segment file (temp file, fsync, rename, directory fsync) and their spool rows are
committed in one transaction. Only then does any of those clients hear 250. One fsync and
one commit per batch instead of per message is what lets a durable intake keep up with a
bare SMTP sink; while a batch is being flushed, the next one fills up.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from archiver.models import SpoolEntry
from archiver.store import fsync_directory

log = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".seg"
ORPHAN_AGE = timedelta(hours=1)


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
        self._counter = itertools.count()
        directory.mkdir(parents=True, exist_ok=True)

    def commit_batch(self, batch: list[Incoming]) -> None:
        """Make every message of `batch` durable, or raise and leave no trace of the batch."""
        name = f"{time.time_ns()}-{os.getpid()}-{next(self._counter)}{SEGMENT_SUFFIX}"
        final = self.directory / name
        temp = self.directory / f".{name}.tmp"
        rows = []
        offset = 0
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                for item in batch:
                    _write_all(fd, item.data)
                    rows.append(_row(item, name, offset))
                    offset += len(item.data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, final)
            fsync_directory(self.directory)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise _spool_error(exc) from exc
        try:
            with self.sessions.begin() as session:
                session.execute(insert(SpoolEntry), rows)
        except Exception as exc:
            final.unlink(missing_ok=True)
            raise _spool_error(exc) from exc

    def read(self, entry: SpoolEntry) -> bytes:
        """The raw bytes of a spooled message, checked against the hash taken at intake."""
        with open(self.directory / entry.segment, "rb") as handle:
            handle.seek(entry.offset)
            data = handle.read(entry.length)
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            raise SpoolError(f"{entry.queue_id}: spooled bytes do not match their hash")
        return data

    def release(self, session: Session, segments: Iterable[str]) -> None:
        """Delete segment files none of whose messages still wait in the spool."""
        for segment in set(segments):
            waiting = session.scalar(
                select(func.count()).select_from(SpoolEntry).where(SpoolEntry.segment == segment)
            )
            if not waiting:
                (self.directory / segment).unlink(missing_ok=True)

    def sweep_orphans(self) -> int:
        """Remove leftovers of batches that crashed before their rows were committed.

        Only files older than an hour are touched: a younger one may belong to a batch that
        another intake process is committing right now.
        """
        cutoff = time.time() - ORPHAN_AGE.total_seconds()
        with self.sessions() as session:
            live = set(session.scalars(select(SpoolEntry.segment).distinct()))
        removed = 0
        for path in self.directory.iterdir():
            stale = path.stat().st_mtime < cutoff
            if stale and (path.name.endswith(".tmp") or path.name not in live):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def pending(self, session: Session) -> int:
        """How many accepted messages are not archived yet."""
        return session.scalar(select(func.count()).select_from(SpoolEntry)) or 0

    @staticmethod
    def finish(session: Session, entry_ids: Iterable[int]) -> None:
        """Remove spool rows whose messages are now archived (inside the archiving transaction)."""
        session.execute(delete(SpoolEntry).where(SpoolEntry.id.in_(list(entry_ids))))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


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
