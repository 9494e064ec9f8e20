"""The indexer: keeps the search index in step with the archive, in batches.

It reads the index queue, writes a batch of documents in one index commit and only then
removes those queue entries, so a crash means a batch is indexed again (documents are
replaced by message id, so that is harmless). The intake never waits for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from archiver.db import is_postgres
from archiver.models import IndexQueueEntry, Message
from archiver.search.backend import IndexBusyError, SearchBackend
from archiver.search.documents import SearchDocument, load_documents
from archiver.store import DirectoryBlobStore

log = logging.getLogger(__name__)

BATCH_SIZE = 500
IDLE_POLL = 0.5  # seconds; keeps new mail searchable within about a second


class Indexer:
    """Moves queued messages into the search backend."""

    def __init__(
        self, sessions: sessionmaker[Session], backend: SearchBackend, store: DirectoryBlobStore
    ) -> None:
        self.sessions = sessions
        self.backend = backend
        self.store = store  # the raw messages, where the words to index come from

    def run_once(self, limit: int = BATCH_SIZE) -> int:
        """Index one batch from the queue; returns how many queue entries it finished.

        On PostgreSQL the batch's queue rows stay locked (`SKIP LOCKED`) until they are
        removed, so indexers of the PostgreSQL backend share the queue without doing a
        row twice, and a batch whose indexer dies is taken by another.
        """
        with self.sessions() as session:
            query = select(IndexQueueEntry.id, IndexQueueEntry.message_pk)
            query = query.order_by(IndexQueueEntry.id).limit(limit)
            claiming = is_postgres(session.get_bind())
            if claiming:
                query = query.with_for_update(skip_locked=True)
            entries = session.execute(query).all()
            if not entries:
                return 0
            pks = {pk for _id, pk in entries}
            documents = load_documents(session, self.store, pks)
            if not claiming:
                session.rollback()  # a SQLite read transaction could not write later
            gone = sorted(pks - {document.message_pk for document in documents})
            self.backend.index(documents)
            self.backend.delete(gone)
            session.execute(
                delete(IndexQueueEntry).where(IndexQueueEntry.id.in_([i for i, _ in entries]))
            )
            session.commit()
        log.info("indexed %d messages, removed %d", len(documents), len(gone))
        return len(entries)

    def run_forever(self, stop: threading.Event) -> None:
        """Index until `stop` is set."""
        while not stop.is_set():
            try:
                done = self.run_once()
            except IndexBusyError as exc:
                log.info("%s; indexing resumes when it is done", exc)
                done = 0
            except Exception:
                log.exception("indexer error")
                done = 0
            if done < BATCH_SIZE:
                stop.wait(IDLE_POLL)

    def rebuild(self, on_batch: Callable[[int], None] | None = None) -> int:
        """Index every archived message from scratch; returns how many were indexed.

        Everything comes from the archive's own tables and blobs, so a lost or damaged
        index is rebuilt from what Arsip stores and nothing else. Queue entries older than the
        rebuild are covered by it and dropped; newer ones stay for the live indexer.
        """
        with self.sessions() as session:
            covered = session.scalar(select(func.max(IndexQueueEntry.id))) or 0
        count = self.backend.rebuild(self._all_documents(on_batch))
        with self.sessions.begin() as session:
            session.execute(delete(IndexQueueEntry).where(IndexQueueEntry.id <= covered))
        return count

    def _all_documents(
        self, on_batch: Callable[[int], None] | None
    ) -> Iterator[list[SearchDocument]]:
        last = 0
        while True:
            with self.sessions() as session:
                pks = list(
                    session.scalars(
                        select(Message.id)
                        .where(Message.id > last)
                        .order_by(Message.id)
                        .limit(BATCH_SIZE)
                    )
                )
                if not pks:
                    return
                documents = load_documents(session, self.store, pks)
            yield documents
            last = pks[-1]
            if on_batch is not None:
                on_batch(len(documents))


def queue_state(session: Session) -> tuple[int, float | None]:
    """How many messages wait to be indexed, and the age in seconds of the oldest."""
    count, oldest = session.execute(
        select(func.count(), func.min(IndexQueueEntry.enqueued_at))
    ).one()
    if oldest is None:
        return 0, None
    if oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    return int(count), max(0.0, (datetime.now(UTC) - oldest).total_seconds())
