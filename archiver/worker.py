"""The spool worker: archive accepted mail, in batches, resuming whatever a crash left.

A batch is claimed, archived and removed from the spool in one transaction, so after a
crash the rows are still there and the batch is simply done again (archiving is
idempotent). A batch that fails is retried one message at a time, so one bad message
waits with a back-off instead of holding up the rest.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker, undefer

from archiver.archive import Archive, RawMessage
from archiver.contentcheck.checker import ContentChecker
from archiver.contentcheck.verdict import Verdict
from archiver.db import is_postgres
from archiver.extensions import Extension
from archiver.models import SpoolEntry
from archiver.routing import Destination, RecipientPolicy
from archiver.spool import Spool

log = logging.getLogger(__name__)

BATCH_SIZE = 200
# With content checks on, a message costs a spamd scan (~150 ms of CPU): smaller batches
# keep a list post that arrives behind a backlog from waiting out a whole large batch.
CHECKED_BATCH_SIZE = 32
BATCH_BYTES = 64 * 1024 * 1024
IDLE_POLL = 0.2  # seconds between looks at an empty spool
SMALL_BATCH_PAUSE = 0.1  # seconds to let a batch fill after a small one
MAX_BACKOFF = timedelta(hours=1)


class Waker(Protocol):
    """An event another process sets (a `multiprocessing.Event`)."""

    def wait(self, timeout: float | None = None) -> bool: ...

    def clear(self) -> None: ...


class SpoolWorker:
    """Moves messages from the spool into the archive."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        archive: Archive,
        policy: RecipientPolicy,
        extensions: Sequence[Extension] = (),
        checker: ContentChecker | None = None,
    ) -> None:
        self.sessions = sessions
        self.archive = archive
        self.policy = policy
        self.extensions = list(extensions)
        self.checker = checker
        self.batch_size = CHECKED_BATCH_SIZE if checker and checker.enabled else BATCH_SIZE

    def run_once(self, limit: int | None = None) -> int:
        """Archive up to `limit` (the batch size) due spool entries; return how many were
        finished."""
        limit = limit or self.batch_size
        try:
            return self._process(limit, only=None)
        except Exception as exc:  # one bad entry must not stop the others
            log.warning("spool batch failed (%s); retrying its entries one by one", exc)
        done = 0
        for entry_id in self._due_ids(limit):
            try:
                done += self._process(1, only=entry_id)
            except Exception as exc:
                self._defer(entry_id, exc)
        return done

    def run_forever(self, stop: threading.Event, wake: Waker | None = None) -> None:
        """Work until `stop` is set.

        After a small batch the worker waits a moment so that, under load, the next batch
        is large: a batch costs a few queries and syncs whatever its size, and archiving
        a moment later costs nobody anything (the sender already has its 250). An idle
        worker starts as soon as the intake sets `wake` (a list post should go out at
        once), and polls in case it never does.
        """
        while not stop.is_set():
            try:
                done = self.run_once()
            except Exception:
                log.exception("spool worker error")
                done = 0
            if done >= self.batch_size:
                continue
            if done:
                stop.wait(SMALL_BATCH_PAUSE)
            elif wake is not None:
                if wake.wait(IDLE_POLL):
                    wake.clear()
            else:
                stop.wait(IDLE_POLL)

    def _due_ids(self, limit: int) -> list[int]:
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(SpoolEntry.id)
                    .where(SpoolEntry.next_attempt_at <= datetime.now(UTC))
                    .order_by(SpoolEntry.priority, SpoolEntry.id)
                    .limit(limit)
                )
            )

    def _process(self, limit: int, only: int | None) -> int:
        with self.sessions.begin() as session:
            entries = self._claim(session, limit, only)
            if not entries:
                return 0
            verdicts = self._check(entries)
            archived: list[tuple[SpoolEntry, RawMessage]] = []
            handed: list[tuple[SpoolEntry, Extension, list[str]]] = []
            for entry in entries:
                raw, claimed = self._route(entry, verdicts.get(entry.id))
                if raw is not None:
                    archived.append((entry, raw))
                handed += [(entry, extension, rcpts) for extension, rcpts in claimed.items()]
            results = self.archive.archive_batch(session, [raw for _, raw in archived])
            for entry, extension, recipients in handed:
                message = self._message(entry, recipients, verdict=verdicts.get(entry.id))
                extension.handle(session, message, recipients)
            Spool.finish(session, [entry.id for entry in entries])
        for (entry, _), result in zip(archived, results, strict=True):
            log.info(
                "queue_id=%s archived as message %d%s%s",
                entry.queue_id,
                result.message_pk,
                "" if result.created else " (copy of a known message)",
                _verdict_note(verdicts.get(entry.id)),
            )
        for entry, _, recipients in handed:
            log.info("queue_id=%s handed on for %s", entry.queue_id, ", ".join(recipients))
        return len(entries)

    @staticmethod
    def _claim(session: Session, limit: int, only: int | None) -> list[SpoolEntry]:
        """Lock and load the next due entries, at most `limit` and about `BATCH_BYTES`.

        On PostgreSQL, `SKIP LOCKED` lets several workers take disjoint batches.
        """
        query = select(SpoolEntry.id, SpoolEntry.size).limit(limit)
        query = query.order_by(SpoolEntry.priority, SpoolEntry.id)  # list mail first
        if only is not None:
            query = query.where(SpoolEntry.id == only)
        else:
            query = query.where(SpoolEntry.next_attempt_at <= datetime.now(UTC))
        if is_postgres(session.get_bind()):
            query = query.with_for_update(skip_locked=True)
        chosen: list[int] = []
        total = 0
        for entry_id, size in session.execute(query):
            if chosen and total + size > BATCH_BYTES:
                break
            chosen.append(entry_id)
            total += size
        if not chosen:
            return []
        return list(
            session.scalars(
                select(SpoolEntry)
                .options(undefer(SpoolEntry.data))
                .where(SpoolEntry.id.in_(chosen))
                .order_by(SpoolEntry.priority, SpoolEntry.id)
            )
        )

    def _check(self, entries: list[SpoolEntry]) -> dict[int, Verdict]:
        """The content checks' verdicts on the batch, by spool entry (none when off).

        They run here, after the 250 and before anything is archived or delivered, all
        of the batch at once and each within the checker's time limit.
        """
        if self.checker is None or not self.checker.enabled:
            return {}
        verdicts = self.checker.check([Spool.read(entry) for entry in entries])
        return {entry.id: verdict for entry, verdict in zip(entries, verdicts, strict=True)}

    def _route(
        self, entry: SpoolEntry, verdict: Verdict | None = None
    ) -> tuple[RawMessage | None, dict[Extension, list[str]]]:
        """The copy to archive (None when every recipient belongs to an extension, which
        then decides what is archived) and the recipients each extension claims.

        The copy is trusted when its client was a trusted journal source, as the intake
        recorded it (`_trusted`); mail to postmaster@ is marked as such.
        """
        trusted = self._trusted(entry)
        journal = postmaster = False
        archive_for = False
        envelope_to: list[str] = []
        claimed: dict[Extension, list[str]] = {}
        for recipient in entry.recipients:
            routing = self.policy.check(recipient, journal_source=trusted)
            address = recipient.lower()
            owner = next((e for e in self.extensions if e.claims(address)), None)
            if routing.destination is Destination.ROUTED and owner is not None:
                claimed.setdefault(owner, []).append(address)
                continue
            archive_for = True
            if routing.destination is Destination.JOURNAL:
                journal = True
            elif routing.destination is Destination.POSTMASTER:
                postmaster = True
            else:
                envelope_to.append(routing.original or address)
        if not archive_for:
            return None, claimed
        message = self._message(entry, envelope_to, journal, verdict, trusted, postmaster)
        return message, claimed

    def _trusted(self, entry: SpoolEntry) -> bool:
        """Whether the entry's client was a trusted journal source; for entries spooled
        before the intake recorded it, its peer address is judged by today's setting."""
        if entry.trusted is not None:
            return entry.trusted
        return self.policy.is_journal_source(entry.peer.rpartition(":")[0])

    @staticmethod
    def _message(
        entry: SpoolEntry,
        recipients: list[str],
        journal: bool = False,
        verdict: Verdict | None = None,
        trusted: bool = False,
        postmaster: bool = False,
    ) -> RawMessage:
        return RawMessage(
            data=Spool.read(entry),
            envelope_from=entry.envelope_from,
            envelope_to=recipients,
            received_at=entry.received_at,
            source=entry.protocol,
            queue_id=entry.queue_id,
            journal=journal,
            verdict=verdict,
            journal_source=trusted,
            postmaster=postmaster,
        )

    def _defer(self, entry_id: int, exc: Exception) -> None:
        with self.sessions.begin() as session:
            entry = session.get(SpoolEntry, entry_id)
            if entry is None:
                return
            entry.attempts += 1
            delay = min(timedelta(seconds=30 * 2 ** min(entry.attempts, 10)), MAX_BACKOFF)
            entry.next_attempt_at = datetime.now(UTC) + delay
            entry.last_error = str(exc)[:2000]
            log.error(
                "queue_id=%s failed (attempt %d, next in %s): %s",
                entry.queue_id,
                entry.attempts,
                delay,
                exc,
            )


def _verdict_note(verdict: Verdict | None) -> str:
    """What the log line says of the content checks: only what stands out."""
    if verdict is None:
        return ""
    notes = [f"virus {verdict.virus}"] if verdict.virus else []
    if verdict.is_spam:
        notes.append(f"spam {verdict.describe_spam()}")
    if verdict.unchecked:
        notes.append(f"unchecked by {', '.join(verdict.unchecked)}")
    return f" ({'; '.join(notes)})" if notes else ""
