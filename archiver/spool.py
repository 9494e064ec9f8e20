"""The durable spool between "250 OK" and the archive.

Accepted transactions are written in batches: every message that arrives while one batch
is being committed joins the next. A batch is one database transaction that inserts a
spool row per message, raw bytes included; only when it has committed (SQLite in WAL mode
with `synchronous=FULL`, or PostgreSQL, which syncs its WAL) does any client of that batch
hear 250. The database's write-ahead log is thus the fsync'd log of accepted mail: one
sync per batch, and a failed batch leaves nothing behind, because a transaction that
did not commit did not happen. It also means several intake processes need no shared
folder, only the shared database. The same transaction records each message's sha256 in
the intake ledger (`archiver.ledger`), so the ledger holds exactly what was acknowledged.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session

from archiver.db import is_postgres
from archiver.ledger import LEDGER_TABLE
from archiver.models import SpoolEntry
from archiver.notify import announce

log = logging.getLogger(__name__)

SPOOL_TABLE = SpoolEntry.__table__
MAX_BATCH_BYTES = 64 * 1024 * 1024  # one transaction stays a reasonable size


class SpoolError(RuntimeError):
    """The spool could not make a batch durable; nothing of it may be acknowledged."""


class SpoolFullError(SpoolError):
    """The disk or the database is out of space (SMTP 452 rather than 451)."""


def new_queue_id() -> str:
    """A short, unique, roughly time-ordered id that names a message in every log line."""
    return f"{time.time_ns() // 1_000_000:011X}{random.getrandbits(32):08X}"


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
    priority: int = 1  # 0: a list's mail, taken before journal copies
    # The client was a trusted journal source: only its copies record envelope and Bcc
    trusted: bool = False


class Spool:
    """The `spool` table: accepted mail that the worker has not archived yet."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.notifies = is_postgres(engine)

    def commit_batch(self, batch: list[Incoming]) -> None:
        """Make every message of `batch` durable and record its hash in the ledger, or
        raise with none of it stored.

        The ledger rows are what was acknowledged: they outlive the message (retention
        must never delete them), and a failed batch leaves neither spool nor ledger rows.
        """
        rows = [_row(item) for item in batch]
        ledger = [{"received_at": row["received_at"], "sha256": row["sha256"]} for row in rows]
        try:
            # Core, not the ORM: this runs once per batch on the intake's critical path.
            with self.engine.begin() as connection:
                connection.execute(SPOOL_TABLE.insert(), rows)
                connection.execute(LEDGER_TABLE.insert(), ledger)
                if self.notifies:
                    announce(connection)  # to workers in other processes
        except Exception as exc:
            raise _spool_error(exc) from exc

    @staticmethod
    def read(entry: SpoolEntry) -> bytes:
        """The raw bytes of a spooled message, checked against the hash taken at intake."""
        data = entry.data
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            raise SpoolError(f"{entry.queue_id}: spooled bytes do not match their hash")
        return data

    @staticmethod
    def pending(session: Session) -> int:
        """How many accepted messages are not archived yet."""
        return session.scalar(select(func.count()).select_from(SpoolEntry)) or 0

    @staticmethod
    def finish(session: Session, entry_ids: Iterable[int]) -> None:
        """Remove spool rows whose messages are now archived (inside the archiving transaction)."""
        session.execute(delete(SpoolEntry).where(SpoolEntry.id.in_(list(entry_ids))))


def _row(item: Incoming) -> dict[str, object]:
    return {
        "queue_id": item.queue_id,
        "data": item.data,
        "size": len(item.data),
        "sha256": hashlib.sha256(item.data).hexdigest(),
        "envelope_from": item.envelope_from,
        "recipients": list(item.recipients),
        "protocol": item.protocol,
        "peer": item.peer,
        "received_at": item.received_at,
        "attempts": 0,
        "next_attempt_at": item.received_at,
        "priority": item.priority,
        "trusted": item.trusted,
    }


def _spool_error(exc: Exception) -> SpoolError:
    text = str(exc).lower()
    if getattr(exc, "errno", None) in {28, 122} or "full" in text or "no space" in text:
        return SpoolFullError(str(exc))
    return SpoolError(str(exc))


class GroupCommitter:
    """Collects accepted messages from all sessions and commits them in batches.

    A single flusher runs at a time in a worker thread; every message that arrives while it
    runs waits for the next flush, so the batch size grows with the load by itself and no
    timer adds latency when the intake is idle.
    """

    def __init__(
        self,
        spool: Spool,
        max_batch: int = 256,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.spool = spool
        self.max_batch = max_batch
        self.on_commit = on_commit  # tells the worker there is new mail
        self._waiting: list[tuple[Incoming, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: Incoming) -> None:
        """Return once `item` is durable; raise `SpoolError` if it could not be made so."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await future

    def _take_batch(self) -> list[tuple[Incoming, asyncio.Future[None]]]:
        """The oldest waiting messages, up to `max_batch` of them and `MAX_BATCH_BYTES`."""
        count, size = 0, 0
        for item, _future in self._waiting[: self.max_batch]:
            if count and size + len(item.data) > MAX_BATCH_BYTES:
                break
            count, size = count + 1, size + len(item.data)
        batch = self._waiting[:count]
        del self._waiting[:count]
        return batch

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            batch = self._take_batch()
            try:
                await loop.run_in_executor(None, self.spool.commit_batch, [i for i, _ in batch])
            except Exception as exc:
                log.error("spool batch of %d failed: %s", len(batch), exc)
                error = exc if isinstance(exc, SpoolError) else SpoolError(str(exc))
                for _item, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            if self.on_commit is not None:
                self.on_commit()
            for _item, future in batch:
                if not future.done():
                    future.set_result(None)
