"""The retention sweep: delete what every matching policy has let go and no hold covers.

How it stays safe and fast on a large archive:

- **Ages count from `Message.retention_date`** (`archiver.retention.clock`): the later of
  `Date:` and arrival for mail the intake received, `Date:` for imported mail. Policies'
  periods and holds' `--since/--until` measure the same date.
- **Queries are evaluated once per sweep**, by the search backend, into sets of message
  ids (one per policy scope and hold query). Custodians and dates are checked per batch
  with indexed look-ups. Nothing scans a whole table to check holds.
- **Only messages the index knew when the sets were taken are candidates.** A message
  waiting for the indexer (new, or re-indexed after a journal copy) could match a hold
  query without being in its set yet, so it waits for the next sweep.
- **Each batch is one transaction**: messages and their addresses and attachments (by
  cascade), blob rows no kept message shares, a removal note per blob file, the index
  queue entries that take the messages out of search, and one audit entry per message
  (its Message-ID and sha256, nothing of its content). Blob files are unlinked after the
  commit; a sweep killed in between leaves only notes that the next sweep finishes.
- **Pausing** (`arsip retention pause`) stops a sweep after its current batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Select, delete, func, insert, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from archiver import audit, plugins
from archiver.deleted import DeletedMessages
from archiver.languages import Text
from archiver.models import Blob, IndexQueueEntry, Message, MessageAddress, utcnow
from archiver.retention.clock import counted_by
from archiver.retention.models import BlobRemoval, LegalHold, RetentionPolicy
from archiver.retention.periods import Period
from archiver.retention.rules import holds, policies, sweep_state
from archiver.search.backend import SearchBackend
from archiver.search.query import parse_query
from archiver.store import DirectoryBlobStore

log = logging.getLogger(__name__)

BATCH_SIZE = 1_000


@dataclass(frozen=True)
class PolicyRule:
    """A policy, ready to apply: the messages it matches (None: all) and its cutoff."""

    name: str
    keep: Period
    cutoff: datetime
    matches: frozenset[int] | None

    def covers(self, pk: int) -> bool:
        return self.matches is None or pk in self.matches


@dataclass(frozen=True)
class HoldRule:
    """A hold, ready to apply: its query's matches (None: no query) and other criteria."""

    name: str
    matches: frozenset[int] | None
    custodians: frozenset[str]
    since: datetime | None
    until: datetime | None

    def covers(self, pk: int, date: datetime, addresses: frozenset[str]) -> bool:
        if self.matches is not None and pk not in self.matches:
            return False
        if self.custodians and not (self.custodians & addresses):
            return False
        if self.since is not None and date < self.since:
            return False
        return self.until is None or date < self.until


@dataclass(frozen=True)
class Rules:
    """Every policy and active hold, evaluated against one state of the index."""

    policies: tuple[PolicyRule, ...]
    holds: tuple[HoldRule, ...]
    known_up_to: int  # the highest message id the index had seen
    pending: frozenset[int]  # ids waiting for the indexer when the sets were taken

    @classmethod
    def load(cls, session: Session, backend: SearchBackend, now: datetime) -> Rules:
        """Read the rules and evaluate their queries (the sweep's one costly step)."""
        known_up_to = session.scalar(select(func.max(Message.id))) or 0
        pending = frozenset(session.scalars(select(IndexQueueEntry.message_pk)))
        return cls(
            policies=tuple(policy_rule(policy, backend, now) for policy in policies(session)),
            holds=tuple(hold_rule(hold, backend) for hold in holds(session)),
            known_up_to=known_up_to,
            pending=pending,
        )

    @property
    def latest_cutoff(self) -> datetime | None:
        """Mail whose retention date is after this is younger than every policy's period,
        so it stays."""
        return max((rule.cutoff for rule in self.policies), default=None)

    @property
    def custodians(self) -> frozenset[str]:
        return frozenset(address for rule in self.holds for address in rule.custodians)

    def verdict(self, pk: int, date: datetime, addresses: frozenset[str]) -> Verdict:
        """What the rules say of one message whose retention date is `date`."""
        matching = [rule for rule in self.policies if rule.covers(pk)]
        return Verdict(
            policies=[rule.name for rule in matching],
            holds=[rule.name for rule in self.holds if rule.covers(pk, date, addresses)],
            expired=bool(matching) and all(date < rule.cutoff for rule in matching),
        )


@dataclass(frozen=True)
class Verdict:
    """The policies matching a message, the holds covering it, and whether all the
    policies have run out (with no policy, nothing runs out)."""

    policies: list[str]
    holds: list[str]
    expired: bool

    @property
    def deletable(self) -> bool:
        return self.expired and not self.holds


def _evaluate(backend: SearchBackend, text: str | None) -> frozenset[int] | None:
    # A rule saved before `foo:bar` was an error keeps the meaning it was saved with.
    node = parse_query(text, unknown_fields=True) if text else None
    return None if node is None else frozenset(backend.matching(node))


def policy_rule(policy: RetentionPolicy, backend: SearchBackend, now: datetime) -> PolicyRule:
    """A policy with its scope evaluated and its cutoff as of `now`."""
    keep = Period.parse(policy.keep)
    return PolicyRule(policy.name, keep, keep.cutoff(now), _evaluate(backend, policy.scope))


def hold_rule(hold: LegalHold, backend: SearchBackend) -> HoldRule:
    """A hold with its query evaluated, as sweeps and coverage counts apply it."""
    return HoldRule(
        name=hold.name,
        matches=_evaluate(backend, hold.query),
        custodians=frozenset(hold.custodians),
        since=hold.since,
        # The end date is a whole day: a hold "until 31 March" covers mail of 31 March.
        until=hold.until + timedelta(days=1) if hold.until is not None else None,
    )


@dataclass
class SweepReport:
    """What a sweep did (or, dry, would do)."""

    dry_run: bool
    deleted: int = 0
    kept_by_holds: int = 0
    waiting_for_index: int = 0
    blobs_removed: int = 0
    per_policy: dict[str, int] = field(default_factory=dict)
    per_hold: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    paused: bool = False
    # The ids a dry run would delete, oldest first by retention date (only when asked).
    doomed: list[int] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "deleted": self.deleted,
            "kept_by_holds": self.kept_by_holds,
            "waiting_for_index": self.waiting_for_index,
            "blobs_removed": self.blobs_removed,
            "per_policy": self.per_policy,
            "per_hold": self.per_hold,
            "seconds": round(self.seconds, 3),
            "paused": self.paused,
        }


@dataclass(frozen=True)
class _Candidate:
    pk: int
    date: datetime
    sha256: str
    message_id: str


class Sweeper:
    """Runs sweeps over one archive; `actor` is who the audit log says deleted."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: DirectoryBlobStore,
        backend: SearchBackend,
        actor: str = audit.SYSTEM,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.backend = backend
        self.actor = actor
        self.batch_size = batch_size
        self._running = threading.Lock()

    def run(
        self,
        dry_run: bool = False,
        now: datetime | None = None,
        stop: threading.Event | None = None,
        collect: bool = False,
    ) -> SweepReport:
        """One sweep; a dry run counts what would go and changes nothing, and with
        `collect` notes which messages in `report.doomed`, to list or export them.

        One sweep at a time per process; two processes sweeping at once stay correct
        (each batch deletes only rows still there) but waste work.
        """
        began = time.monotonic()
        now = now or utcnow()
        report = SweepReport(dry_run=dry_run)
        with self._running:
            if not dry_run:
                report.blobs_removed += self._remove_noted_blobs()
                with self.sessions.begin() as session:
                    state = sweep_state(session)
                    if state.paused:
                        report.paused = True
                        return report
                    state.last_started_at = now
            with self.sessions() as session:
                rules = Rules.load(session, self.backend, now)
            for batch in self._batches(rules):
                if stop is not None and stop.is_set():
                    break
                if not dry_run and self._paused():
                    report.paused = True
                    break
                self._decide(rules, batch, report, dry_run, collect)
            if not dry_run:
                report.blobs_removed += self._remove_noted_blobs()
                with self.sessions.begin() as session:
                    state = sweep_state(session)
                    state.last_finished_at = utcnow()
                    state.last_deleted = report.deleted
        report.seconds = time.monotonic() - began
        if not dry_run:
            log.info(
                "retention sweep: %d deleted, %d kept by holds, %.1f s",
                report.deleted,
                report.kept_by_holds,
                report.seconds,
            )
        return report

    def _paused(self) -> bool:
        with self.sessions() as session:
            return sweep_state(session).paused

    def _batches(self, rules: Rules) -> Iterator[list[_Candidate]]:
        """Messages older than the latest cutoff that the index knew, oldest first, in
        batches, by a keyset on (retention_date, id) that its index serves."""
        cutoff = rules.latest_cutoff
        if cutoff is None:
            return
        after: tuple[datetime, int] | None = None
        while True:
            query = candidate_query(cutoff, rules.known_up_to, after, self.batch_size)
            with self.sessions() as session:
                rows = session.execute(query).all()
            if not rows:
                return
            after = (rows[-1].retention_date, rows[-1].id)
            yield [
                _Candidate(row.id, row.retention_date, row.sha256, row.message_id) for row in rows
            ]

    def _decide(
        self,
        rules: Rules,
        batch: list[_Candidate],
        report: SweepReport,
        dry_run: bool,
        collect: bool = False,
    ) -> None:
        pks = [candidate.pk for candidate in batch]
        with self.sessions() as session:
            pending = set(rules.pending) | set(
                session.scalars(
                    select(IndexQueueEntry.message_pk).where(IndexQueueEntry.message_pk.in_(pks))
                )
            )
            addresses = custodian_addresses(session, pks, rules.custodians)
        doomed: list[tuple[_Candidate, list[str]]] = []
        for candidate in batch:
            if candidate.pk in pending:
                report.waiting_for_index += 1
                continue
            verdict = rules.verdict(
                candidate.pk, candidate.date, addresses.get(candidate.pk, frozenset())
            )
            if verdict.expired and verdict.holds:
                report.kept_by_holds += 1
                for name in verdict.holds:
                    report.per_hold[name] = report.per_hold.get(name, 0) + 1
            if verdict.deletable:
                doomed.append((candidate, verdict.policies))
                for name in verdict.policies:
                    report.per_policy[name] = report.per_policy.get(name, 0) + 1
        if dry_run or not doomed:
            report.deleted += len(doomed)
            if dry_run and collect:
                report.doomed.extend(candidate.pk for candidate, _ in doomed)
            return
        report.deleted += self._delete(doomed)

    def _delete(self, doomed: Sequence[tuple[_Candidate, list[str]]]) -> int:
        """Delete one batch in one transaction; returns how many messages went."""
        return delete_messages(
            self.sessions,
            self.store,
            self.actor,
            [
                (candidate.pk, candidate.sha256, candidate.message_id, {"policies": matching})
                for candidate, matching in doomed
            ],
        )

    def _remove_noted_blobs(self) -> int:
        return remove_noted_blobs(self.sessions, self.store)


def delete_messages(
    sessions: sessionmaker[Session],
    store: DirectoryBlobStore,
    actor: str,
    doomed: Sequence[tuple[int, str, str, dict[str, object]]],
    action: str = "message.delete",
) -> int:
    """Delete messages, given as (id, sha256, Message-ID, audit details), in one
    transaction: their rows, blob rows no kept message shares, a removal note per blob
    file, the index queue entries that take them out of search, the copies plug-ins keep
    (a post waiting for a list's digest), and one audit entry `action` each (its
    Message-ID, id and sha256 beside `details`). Blob files are unlinked after the
    commit. Returns how many messages went. Whether they may go (no hold covers them) is
    the caller's to decide."""
    pks = [pk for pk, _, _, _ in doomed]
    hashes = sorted({sha256 for _, sha256, _, _ in doomed})
    now = utcnow()
    with sessions.begin() as session:
        plugins.forget_messages(session, DeletedMessages.of(session, pks))
        gone = session.execute(delete(Message).where(Message.id.in_(pks)))
        shared = set(
            session.scalars(select(Message.sha256).where(Message.sha256.in_(hashes)).distinct())
        )
        orphans = [sha for sha in hashes if sha not in shared]
        if orphans:
            session.execute(delete(Blob).where(Blob.sha256.in_(orphans)))
            session.execute(
                insert(BlobRemoval), [{"sha256": sha, "queued_at": now} for sha in orphans]
            )
        session.execute(
            insert(IndexQueueEntry),
            [{"message_pk": pk, "action": "delete", "enqueued_at": now} for pk in pks],
        )
        audit.record_many(
            session,
            actor,
            action,
            [
                (message_id, {"pk": pk, "sha256": sha256, **details})
                for pk, sha256, message_id, details in doomed
            ],
        )
    remove_noted_blobs(sessions, store, orphans)
    return gone.rowcount if gone.rowcount is not None and gone.rowcount >= 0 else len(pks)


def remove_noted_blobs(
    sessions: sessionmaker[Session], store: DirectoryBlobStore, only: Sequence[str] | None = None
) -> int:
    """Unlink blob files whose removal was committed, then forget the notes."""
    with sessions() as session:
        query = select(BlobRemoval.sha256)
        if only is not None:
            query = query.where(BlobRemoval.sha256.in_(only))
        noted = list(session.scalars(query))
    if not noted:
        return 0
    store.delete_many(noted)
    with sessions.begin() as session:
        session.execute(delete(BlobRemoval).where(BlobRemoval.sha256.in_(noted)))
    return len(noted)


def candidate_query(
    cutoff: datetime, known_up_to: int, after: tuple[datetime, int] | None, limit: int
) -> Select[tuple[int, datetime, str, str]]:
    """The next batch of messages older than `cutoff`: a range scan of the
    (retention_date, id) index."""
    query = (
        select(Message.id, Message.retention_date, Message.sha256, Message.message_id)
        .where(Message.retention_date < cutoff, Message.id <= known_up_to)
        .order_by(Message.retention_date, Message.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(tuple_(Message.retention_date, Message.id) > tuple_(*after))
    return query


def custodian_query(pks: Sequence[int], custodians: frozenset[str]) -> Select[tuple[int, str]]:
    """Which custodians each of `pks` concerns: look-ups by message id in the unique
    (message, role, address) index, never a scan of the address table."""
    return select(MessageAddress.message_pk, MessageAddress.address).where(
        MessageAddress.message_pk.in_(pks), MessageAddress.address.in_(sorted(custodians))
    )


def custodian_addresses(
    session: Session, pks: Sequence[int], custodians: frozenset[str]
) -> dict[int, frozenset[str]]:
    """For each message of `pks`, which custodians it concerns (any role, envelope too)."""
    if not custodians or not pks:
        return {}
    found: dict[int, set[str]] = defaultdict(set)
    for pk, address in session.execute(custodian_query(pks, custodians)):
        found[pk].add(address)
    return {pk: frozenset(addresses) for pk, addresses in found.items()}


@dataclass(frozen=True)
class Explanation:
    """Why one archived message stays or goes, and when it may go.

    `counts_from` is the date its periods and holds' date ranges measure (`counted_by`
    says which rule chose it); `date` is its `Date:` header and `received_at` its arrival.
    """

    message_id: str
    date: datetime
    received_at: datetime
    counts_from: datetime
    counted_by: Text
    policies: list[tuple[str, str, datetime]]  # name, period, end of that period
    holds: list[str]
    deletable_from: datetime | None  # None: kept forever (no policy), or held
    waiting_for_index: bool

    def as_json(self) -> dict[str, object]:
        return {
            "message_id": self.message_id,
            "date": self.date.isoformat(),
            "received_at": self.received_at.isoformat(),
            "counts_from": self.counts_from.isoformat(),
            "counted_by": str(self.counted_by),
            "policies": [
                {"name": name, "keep": keep, "until": end.isoformat()}
                for name, keep, end in self.policies
            ],
            "holds": self.holds,
            "deletable_from": self.deletable_from.isoformat() if self.deletable_from else None,
            "waiting_for_index": self.waiting_for_index,
        }


def explain(
    session: Session, backend: SearchBackend, message_id: str, now: datetime | None = None
) -> list[Explanation]:
    """Which policies and holds apply to the messages with this Message-ID, and when each
    becomes deletable (the end of its longest matching period, unless a hold covers it)."""
    wanted = message_id.strip().removeprefix("<").removesuffix(">")
    rows = session.execute(
        select(
            Message.id,
            Message.date,
            Message.received_at,
            Message.retention_date,
            Message.source,
            Message.message_id,
        ).where(Message.message_id == wanted)
    ).all()
    if not rows:
        return []
    rules = Rules.load(session, backend, now or utcnow())
    addresses = custodian_addresses(session, [row.id for row in rows], rules.custodians)
    explanations = []
    for row in rows:
        start = row.retention_date
        verdict = rules.verdict(row.id, start, addresses.get(row.id, frozenset()))
        matching = [rule for rule in rules.policies if rule.name in verdict.policies]
        ends = [(rule.name, str(rule.keep), rule.keep.end(start)) for rule in matching]
        explanations.append(
            Explanation(
                message_id=row.message_id,
                date=row.date,
                received_at=row.received_at,
                counts_from=start,
                counted_by=counted_by(row.source),
                policies=ends,
                holds=verdict.holds,
                deletable_from=max(end for _, _, end in ends)
                if ends and not verdict.holds
                else None,
                waiting_for_index=row.id in rules.pending,
            )
        )
    return explanations
