"""The spool worker: archive accepted mail, in batches, resuming whatever a crash left.

A batch goes in three steps. It is claimed (on PostgreSQL, where several workers share
the spool, with advisory locks that no transaction holds). Then what needs the network is
asked, outside any transaction: the content checks' verdicts, and the extensions' DNS
look-ups (a list post's DMARC policy). Last, one transaction archives the batch, lets the
extensions write, and removes the rows from the spool; a slow daemon or resolver holds
no database lock meanwhile. After a crash the rows are still there and the batch is
simply done again (archiving is idempotent). A batch that fails is retried one message
at a time, so one bad message waits with a back-off instead of holding up the rest.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker, undefer

from archiver.archive import Archive, RawMessage
from archiver.contentcheck.checker import ContentChecker
from archiver.contentcheck.verdict import Verdict
from archiver.db import is_postgres
from archiver.extensions import Extension, Handling
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
# On PostgreSQL, spool row N is claimed under the advisory lock key CLAIM_KEYS + N: far
# above the keys `transaction_lock` hashes names to, so the two never meet.
CLAIM_KEYS = 1 << 62
# Due rows looked at per place in a batch: room to pass over other workers' claims.
CLAIM_WINDOW = 4


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
        with self._claimed(limit, only) as entries:
            if not entries:
                return 0
            verdicts = self._check(entries)
            archived: list[tuple[SpoolEntry, RawMessage]] = []
            handed: list[tuple[SpoolEntry, list[str], Handling]] = []
            for entry in entries:
                verdict = verdicts.get(entry.id)
                raw, claimed = self._route(entry, verdict)
                if raw is not None:
                    archived.append((entry, raw))
                for extension, recipients in claimed.items():
                    message = self._message(entry, recipients, verdict=verdict)
                    handed.append((entry, recipients, extension.prepare(message, recipients)))
            with self.sessions.begin() as session:
                present = self._still_spooled(session, [entry.id for entry in entries])
                archived = [(entry, raw) for entry, raw in archived if entry.id in present]
                handed = [item for item in handed if item[0].id in present]
                results = self.archive.archive_batch(session, [raw for _, raw in archived])
                for _, _, handling in handed:
                    handling(session)
                Spool.finish(session, present)
        for (entry, _), result in zip(archived, results, strict=True):
            log.info(
                "queue_id=%s archived as message %d%s%s",
                entry.queue_id,
                result.message_pk,
                "" if result.created else " (copy of a known message)",
                _verdict_note(verdicts.get(entry.id)),
            )
        for entry, recipients, _ in handed:
            log.info("queue_id=%s handed on for %s", entry.queue_id, ", ".join(recipients))
        return len(present)

    @contextlib.contextmanager
    def _claimed(self, limit: int, only: int | None) -> Iterator[list[SpoolEntry]]:
        """The next due entries (or entry `only`), at most `limit` and about
        `BATCH_BYTES`, loaded with their bytes and this worker's until the block ends.

        On PostgreSQL several workers share the spool: an entry is claimed with a
        session-level advisory lock on a connection of this worker's, which holds it
        without an open transaction while the network is asked, and drops it if the
        worker dies. SQLite has one service per database (`ServeLock`) and so one worker,
        which needs no claims.
        """
        engine: Engine = self.sessions.kw["bind"]
        if not is_postgres(engine):
            yield self._due(limit, only, claim=None)
            return
        with engine.connect() as connection:
            claims = connection.execution_options(isolation_level="AUTOCOMMIT")

            def claim(entry_id: int) -> bool:
                taken = claims.scalar(select(func.pg_try_advisory_lock(CLAIM_KEYS + entry_id)))
                return bool(taken)

            try:
                yield self._due(limit, only, claim)
            finally:
                with contextlib.suppress(DBAPIError):  # a lost connection lost its locks too
                    claims.execute(select(func.pg_advisory_unlock_all()))

    def _due(
        self, limit: int, only: int | None, claim: Callable[[int], bool] | None
    ) -> list[SpoolEntry]:
        """Up to `limit` due entries in order (list mail first), about `BATCH_BYTES` at
        most; with `claim`, those it grants among the first `CLAIM_WINDOW` * `limit`."""
        window = limit * CLAIM_WINDOW if claim is not None else limit
        query = select(SpoolEntry.id, SpoolEntry.size).limit(window)
        query = query.order_by(SpoolEntry.priority, SpoolEntry.id)
        if only is not None:
            query = query.where(SpoolEntry.id == only)
        else:
            query = query.where(SpoolEntry.next_attempt_at <= datetime.now(UTC))
        chosen: list[int] = []
        total = 0
        with self.sessions() as session:
            for entry_id, size in session.execute(query).all():
                if len(chosen) == limit or (chosen and total + size > BATCH_BYTES):
                    break
                if claim is not None and not claim(entry_id):
                    continue  # another worker's
                chosen.append(entry_id)
                total += size
            if not chosen:
                return []
            # Read after claiming: a row another worker finished meanwhile is gone now.
            return list(
                session.scalars(
                    select(SpoolEntry)
                    .options(undefer(SpoolEntry.data))
                    .where(SpoolEntry.id.in_(chosen))
                    .order_by(SpoolEntry.priority, SpoolEntry.id)
                )
            )

    @staticmethod
    def _still_spooled(session: Session, entry_ids: list[int]) -> set[int]:
        """Which of the claimed entries are still to be done, locked until the end of the
        transaction. Only a worker whose claims were lost with its connection finds one
        gone: another worker took it meanwhile, and it is not done twice."""
        query = select(SpoolEntry.id).where(SpoolEntry.id.in_(entry_ids))
        if is_postgres(session.get_bind()):
            query = query.with_for_update()
        return set(session.scalars(query))

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
