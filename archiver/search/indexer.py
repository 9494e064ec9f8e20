"""The indexer: keeps the search index in step with the archive, in batches.

It reads the index queue, writes a batch of documents in one index commit and only then
removes those queue entries, so a crash means a batch is indexed again (documents are
replaced by message id, so that is harmless). The intake never waits for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from archiver.db import is_postgres
from archiver.models import IndexQueueEntry, Message
from archiver.search.backend import IndexBusyError, SearchBackend
from archiver.search.documents import SearchDocument, load_documents
from archiver.store import DirectoryBlobStore

log = logging.getLogger(__name__)

# A batch is one index commit, and so one new segment. Larger batches share more of their
# words (a word is written once per segment), so a backlog indexes with less work: 2,000
# messages took a fifth less CPU than 500. The mail's size bounds a batch too, since its
# text and postings are held in memory until the commit (`whoosh_codec.TermPool`).
BATCH_SIZE = 2_000
BATCH_BYTES = 24 * 1024 * 1024
IDLE_POLL = 0.5  # seconds; keeps new mail searchable within about a second


class Indexer:
    """Moves queued messages into the search backend."""

    def __init__(
        self, sessions: sessionmaker[Session], backend: SearchBackend, store: DirectoryBlobStore
    ) -> None:
        self.sessions = sessions
        self.backend = backend
        self.store = store  # the raw messages, where the words to index come from
        self._merges_put_off = False  # batches were committed since the last `merge`

    def run_once(self, limit: int = BATCH_SIZE) -> int:
        """Index one batch from the queue; returns how many queue entries it finished.

        On PostgreSQL the batch's queue rows stay locked (`SKIP LOCKED`) until they are
        removed, so indexers of the PostgreSQL backend share the queue without doing a
        row twice, and a batch whose indexer dies is taken by another.

        The batch is committed without waiting on merges; once the queue is worked off,
        the backend merges what it put off (`SearchBackend.merge`), after the batch's
        entries are gone, so the merge delays no message's being searchable.
        """
        with self.sessions() as session:
            query = (
                select(IndexQueueEntry.id, IndexQueueEntry.message_pk, Message.size)
                .outerjoin(Message, Message.id == IndexQueueEntry.message_pk)
                .order_by(IndexQueueEntry.id)
                .limit(limit)
            )
            claiming = is_postgres(session.get_bind())
            if claiming:
                query = query.with_for_update(skip_locked=True, of=IndexQueueEntry)
            rows = session.execute(query).all()
            entries = _within_bytes(rows, BATCH_BYTES)
            if not entries:
                self._merge_put_off()
                return 0
            caught_up = len(entries) == len(rows) < limit
            pks = {pk for _id, pk, _size in entries}
            documents = load_documents(session, self.store, pks)
            if not claiming:
                session.rollback()  # a SQLite read transaction could not write later
            gone = sorted(pks - {document.message_pk for document in documents})
            self.backend.index(documents, defer_merges=True)
            self._merges_put_off = True
            self.backend.delete(gone)
            session.execute(
                delete(IndexQueueEntry).where(IndexQueueEntry.id.in_([i for i, _, _ in entries]))
            )
            session.commit()
        log.info("indexed %d messages, removed %d", len(documents), len(gone))
        if caught_up:
            self._merge_put_off()
        return len(entries)

    def _merge_put_off(self) -> None:
        """Have the backend merge what this indexer's commits put off, if anything."""
        if self._merges_put_off:
            self.backend.merge()
            self._merges_put_off = False

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


def _within_bytes(entries: Sequence[Row[Any]], budget: int) -> Sequence[Row[Any]]:
    """The first entries whose messages add up to at most `budget` bytes (at least one;
    a message already deleted counts nothing)."""
    total = 0
    for count, (_id, _pk, size) in enumerate(entries):
        total += size or 0
        if total > budget and count:
            return entries[:count]
    return entries


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
