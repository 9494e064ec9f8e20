"""Carrying out erasure requests: erase a data subject's mail that may go, remember the
request while a hold or a retention period keeps the rest, and erase that later.

A request covers every message the address appears in, in any role (From, To, Cc, Bcc,
Reply-To, the envelope), that was archived by the time it was made. Each pass judges
all of them first (`verdicts.judge`, by the sweep's own rules), then records what it
found, then deletes what may go the one way messages are deleted
(`retention.sweep.delete_messages`: blob, rows, search entries, digest copies, and an
audit entry `subject.erase` per message naming the request). The request is done when
nothing it covers is left; until then the scheduler's pass runs it again after every
retention sweep. A message is erased whole, for everyone it concerns.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session, sessionmaker

from archiver import audit
from archiver.accounts import BadEmail, normalise_email
from archiver.cases.holds import hold_cases
from archiver.erasure.models import DONE, OPEN, ErasureRequest
from archiver.erasure.verdicts import Kind, Verdict, judge
from archiver.models import IndexQueueEntry, Message, utcnow
from archiver.retention.purge import message_batches
from archiver.retention.sweep import BATCH_SIZE, Rules, custodian_addresses, delete_messages
from archiver.search.backend import SearchBackend
from archiver.store import DirectoryBlobStore
from archiver.subjects import concerning

ERASED = "subject.erase"  # the audit action of each message an erasure deletes


class ErasureError(ValueError):
    """A request that cannot be made as asked (not an address); the text says why."""


@dataclass
class ErasureReport:
    """What one pass over a request found and did (a dry run: would do)."""

    address: str
    dry_run: bool
    request: int | None = None  # its number; None on a dry run without an open request
    requested_at: datetime | None = None
    counts: Counter[Kind] = field(default_factory=Counter)
    erased: int = 0  # deleted by this pass (a message deleted meanwhile is not counted)
    later: int = 0  # messages archived after the request, which it does not cover
    done: bool = False

    @property
    def kept(self) -> int:
        return self.counts[Kind.HELD] + self.counts[Kind.RETAINED] + self.counts[Kind.WAITING]

    def as_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "dry_run": self.dry_run,
            "request": self.request,
            "requested_at": self.requested_at.isoformat() if self.requested_at else None,
            "counts": {str(kind): self.counts[kind] for kind in Kind},
            "erased": self.erased,
            "later": self.later,
            "done": self.done,
        }


def subject_address(text: str) -> str:
    """`text` as addresses are stored (trimmed, lower-case), or `ErasureError`."""
    try:
        return normalise_email(text)
    except BadEmail as exc:
        raise ErasureError(f"{text!r} is not an email address") from exc


def open_request(session: Session, address: str) -> ErasureRequest | None:
    """The address's request still waiting for kept mail, if any (there is at most one)."""
    return session.scalar(
        select(ErasureRequest)
        .where(ErasureRequest.address == address, ErasureRequest.status == OPEN)
        .order_by(ErasureRequest.id)
        .limit(1)
    )


def requests(session: Session, only_open: bool = False) -> list[ErasureRequest]:
    """Every request, newest first (only the open ones when asked)."""
    query = select(ErasureRequest).order_by(ErasureRequest.id.desc())
    if only_open:
        query = query.where(ErasureRequest.status == OPEN)
    return list(session.scalars(query))


def covered(address: str, requested_at: datetime) -> ColumnElement[bool]:
    """The messages a request covers: the address's, archived by `requested_at` (by their
    arrival: mail imported from IMAP arrived when its server received it)."""
    return concerning(address) & (Message.received_at <= requested_at)


OnVerdict = Callable[[Verdict], None]


@dataclass(frozen=True)
class Eraser:
    """Runs erasure requests over one archive; `actor` is who the audit log says acted."""

    sessions: sessionmaker[Session]
    store: DirectoryBlobStore
    backend: SearchBackend
    actor: str = audit.SYSTEM

    def request(
        self,
        address: str,
        dry_run: bool = False,
        now: datetime | None = None,
        on_verdict: OnVerdict | None = None,
    ) -> ErasureReport:
        """Erase `address`'s mail as the law allows, now; remember the request while some
        is kept. Asking again while a request is open runs that request again (it keeps
        its date). A dry run changes nothing and reports the same verdicts."""
        address = subject_address(address)
        now = now or utcnow()
        with self.sessions() as session:
            found = open_request(session, address)
            rules = Rules.load(session, self.backend, now)
        report = ErasureReport(address, dry_run)
        if found is not None:
            report.request, report.requested_at = found.id, found.requested_at
        verdicts = self._judge(rules, address, report.requested_at or now, report)
        if dry_run:
            details = {"address": address, "counts": report.as_json()["counts"]}
            with self.sessions.begin() as session:
                audit.record(session, self.actor, "subject.erase.preview", address, details)
        else:
            self._record_request(report, now)
            self._erase(report, verdicts, now)
        for verdict in verdicts:
            if on_verdict is not None:
                on_verdict(verdict)
        return report

    def run_open(self, now: datetime | None = None) -> list[ErasureReport]:
        """Run every open request again (the scheduler's pass): what a released hold or
        an ended period no longer keeps goes now."""
        now = now or utcnow()
        with self.sessions() as session:
            waiting = [
                (item.id, item.address, item.requested_at) for item in requests(session, True)
            ]
            if not waiting:
                return []
            rules = Rules.load(session, self.backend, now)
        reports = []
        for number, address, requested_at in waiting:
            report = ErasureReport(address, False, number, requested_at)
            self._erase(report, self._judge(rules, address, requested_at, report), now)
            reports.append(report)
        return reports

    def _judge(
        self, rules: Rules, address: str, requested_at: datetime, report: ErasureReport
    ) -> list[Verdict]:
        """Every message the request covers, judged; counts them in `report`."""
        verdicts: list[Verdict] = []
        with self.sessions() as session:
            cases = hold_cases(session)
        for batch in message_batches(self.sessions, covered(address, requested_at)):
            pks = [row.id for row in batch]
            with self.sessions() as session:
                pending = _pending(session, rules, pks)
                addresses = custodian_addresses(session, pks, rules.custodians)
            for row in batch:
                found = addresses.get(row.id, frozenset())
                verdict = judge(rules, row, found, row.id in pending, cases)
                report.counts[verdict.kind] += 1
                verdicts.append(verdict)
        later = concerning(address) & (Message.received_at > requested_at)
        with self.sessions() as session:
            report.later = session.scalar(select(func.count()).where(later)) or 0
        return verdicts

    def _record_request(self, report: ErasureReport, now: datetime) -> None:
        """Open the request (or note that it was asked again), audited with what it found."""
        with self.sessions.begin() as session:
            if report.request is None:
                made = ErasureRequest(
                    address=report.address, requested_at=now, requested_by=self.actor
                )
                session.add(made)
                session.flush()
                report.request, report.requested_at = made.id, now
            details = {
                "request": report.request,
                "requested_at": report.requested_at,
                "counts": report.as_json()["counts"],
                "later": report.later,
            }
            audit.record(session, self.actor, "subject.erase.request", report.address, details)

    def _erase(self, report: ErasureReport, verdicts: Sequence[Verdict], now: datetime) -> None:
        """Delete what may go, then note what is left on the request (done if nothing)."""
        doomed = [verdict for verdict in verdicts if verdict.kind is Kind.ERASE]
        for chunk in _chunks(doomed, BATCH_SIZE):
            report.erased += delete_messages(
                self.sessions,
                self.store,
                self.actor,
                [(v.pk, v.sha256, v.message_id, {"request": report.request}) for v in chunk],
                action=ERASED,
            )
        with self.sessions.begin() as session:
            request = session.get(ErasureRequest, report.request)
            if request is None:
                return
            request.erased += report.erased
            request.held = report.counts[Kind.HELD]
            request.retained = report.counts[Kind.RETAINED]
            request.waiting = report.counts[Kind.WAITING]
            request.last_run_at = now
            if report.kept == 0:
                request.status, request.done_at = DONE, now
                report.done = True
                details = {"request": request.id, "erased": request.erased}
                audit.record(session, self.actor, "subject.erase.done", request.address, details)


def _pending(session: Session, rules: Rules, pks: Sequence[int]) -> set[int]:
    """Which of `pks` the index had not read when the rules were evaluated, or since."""
    queued = session.scalars(
        select(IndexQueueEntry.message_pk).where(IndexQueueEntry.message_pk.in_(pks))
    )
    return {pk for pk in pks if pk in rules.pending or pk > rules.known_up_to} | set(queued)


def _chunks(items: Sequence[Verdict], size: int) -> Iterator[Sequence[Verdict]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
