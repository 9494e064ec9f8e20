"""Getting the seals and the audit log's head stamped, whenever the TSA answers.

The scheduler runs `stamp_waiting` every minute; `arsip timestamps stamp` runs it by hand.
It first notes what needs a token (`note_evidence`): each ledger seal that has no row
yet, and the audit log's head once it has moved past the last stamped head and that one
is `HEAD_EVERY` old (a head that moved only because a stamp was recorded has not moved).
Then it asks the TSA for the rows that are due, one at a time, outside any transaction.

The TSA is one server: when it fails, every row that was due waits again, each for its
own growing pause (`pause`), and the run stops, so an outage costs one timeout per run,
never one per row. Intake never waits for any of this. A stored token and its audit entry
(`timestamp.stamp`) commit together; a token for a row that another run stamped
meanwhile is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from sqlalchemy import exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from archiver import audit
from archiver.audit import AuditEntry
from archiver.config import Settings
from archiver.ledger import DaySeal
from archiver.models import utcnow
from archiver.timestamps.models import (
    AUDIT_HEAD,
    LEDGER_SEAL,
    STAMPED,
    WAITING,
    TimestampToken,
    current_record,
    imprint_of,
    stamped_record,
)
from archiver.timestamps.tsa import TimestampError, load_ca, request_token
from archiver.timestamps.tsa_url import shown_url

log = logging.getLogger(__name__)

STAMP_ACTION = "timestamp.stamp"
HEAD_EVERY = timedelta(hours=1)  # the audit head is stamped at most this often
FIRST_PAUSE = timedelta(minutes=1)
LONGEST_PAUSE = timedelta(hours=1)


@dataclass
class StampRun:
    """What one run did: tokens stored, rows still waiting, and the TSA's failure."""

    stamped: int = 0
    waiting: int = 0
    error: str | None = None


def pause(attempts: int) -> timedelta:
    """How long a row waits after its `attempts`-th failure: 1, 2, 4… minutes, at most
    an hour, so a long outage costs a request an hour and a short one is caught up soon."""
    return min(FIRST_PAUSE * 2 ** min(max(attempts - 1, 0), 16), LONGEST_PAUSE)


def note_evidence(session: Session, now: datetime) -> int:
    """Add a waiting row for each seal without one, and for the audit head when it is due
    (see the module's docstring); returns how many were added."""
    stamped_days = select(TimestampToken.key).where(TimestampToken.kind == LEDGER_SEAL)
    added = 0
    for day, digest in session.execute(
        select(DaySeal.day, DaySeal.digest).where(DaySeal.day.not_in(stamped_days))
    ):
        session.add(_row(LEDGER_SEAL, day, digest, now))
        added += 1
    head = _due_head(session, now)
    if head is not None:
        session.add(_row(AUDIT_HEAD, str(head.count), head.hash, now))
        added += 1
    session.flush()
    return added


def _row(kind: str, key: str, digest: str, now: datetime) -> TimestampToken:
    return TimestampToken(
        kind=kind,
        key=key,
        imprint=imprint_of(stamped_record(kind, key, digest)),
        status=WAITING,
        created_at=now,
        attempts=0,
        next_attempt_at=now,
        tsa="",
    )


def _due_head(session: Session, now: datetime) -> audit.AuditHead | None:
    head = audit.head(session)
    if head is None or head.count == 0:
        return None
    last = session.scalars(
        select(TimestampToken)
        .where(TimestampToken.kind == AUDIT_HEAD)
        .order_by(TimestampToken.id.desc())
        .limit(1)
    ).first()
    if last is not None and (last.status == WAITING or now - last.created_at < HEAD_EVERY):
        return None  # one head at a time; the next, an hour after the last was noted
    since = int(last.key) if last is not None else 0
    moved = session.scalar(
        select(exists().where(AuditEntry.seq > since, AuditEntry.action != STAMP_ACTION))
    )
    return head if moved else None


def stamp_waiting(
    settings: Settings,
    sessions: sessionmaker[Session],
    actor: str = audit.SYSTEM,
    now: datetime | None = None,
    everything: bool = False,
) -> StampRun:
    """Note new evidence and stamp the waiting rows that are due (all of them with
    `everything`, as `arsip timestamps stamp` does); nothing without `ARSIP_TSA_URL`."""
    run = StampRun()
    if not settings.tsa_url:
        return run
    now = now or utcnow()
    try:
        with sessions.begin() as session:
            note_evidence(session, now)
    except IntegrityError:
        pass  # a run elsewhere (`arsip timestamps stamp`) noted the same evidence first
    query = select(TimestampToken.id).where(TimestampToken.status == WAITING)
    if not everything:
        query = query.where(TimestampToken.next_attempt_at <= now)
    with sessions() as session:
        due = list(session.scalars(query.order_by(TimestampToken.id)))
    try:
        ca = load_ca(settings.tsa_ca) if settings.tsa_ca else None
    except TimestampError as exc:
        run.error = str(exc)
        due_left = due
    else:
        due_left = []
        for number, row_id in enumerate(due):
            try:
                run.stamped += _stamp_one(settings, sessions, row_id, ca, actor, now)
            except TimestampError as exc:
                run.error = str(exc)
                due_left = due[number:]
                break
    if run.error is not None:
        _failed(sessions, due_left, run.error, now)
        log.warning(
            "timestamps: %d waiting; the TSA at %s failed: %s",
            len(due_left),
            shown_url(settings.tsa_url),
            run.error,
        )
    with sessions() as session:
        run.waiting = (
            session.scalar(select(func.count()).where(TimestampToken.status == WAITING)) or 0
        )
    if run.stamped:
        log.info("timestamps: %d token(s) stored, %d waiting", run.stamped, run.waiting)
    return run


def _stamp_one(
    settings: Settings,
    sessions: sessionmaker[Session],
    row_id: int,
    ca: Sequence[x509.Certificate] | None,
    actor: str,
    now: datetime,
) -> int:
    """Ask for and store the token of one row; 1 if stored, 0 if another run was first
    or the seal or audit entry is gone or changed since it was noted: the row keeps
    waiting with that as its error, for `arsip stats` and /admin/ to show."""
    with sessions.begin() as session:
        row = session.get(TimestampToken, row_id)
        if row is None or row.status != WAITING:
            return 0
        kind, key = row.kind, row.key
        data = current_record(session, row.kind, row.key)
        if data is None or imprint_of(data) != row.imprint:
            gone = data is None
            _note_failure(row, "it is gone" if gone else "it changed after it was noted", now)
            return 0
    token = request_token(settings.tsa_url, data, settings.tsa_timeout, ca)
    tsa = shown_url(settings.tsa_url)
    with sessions.begin() as session:
        stored = session.execute(
            update(TimestampToken)
            .where(TimestampToken.id == row_id, TimestampToken.status == WAITING)
            .values(
                status=STAMPED,
                token=token.der,
                gen_time=token.gen_time,
                tsa=tsa,
                next_attempt_at=None,
                last_error=None,
            )
        ).rowcount
        if stored:
            audit.record(
                session,
                actor,
                STAMP_ACTION,
                f"{kind} {key}",
                {"imprint": imprint_of(data), "tsa": tsa, "gen_time": token.gen_time.isoformat()},
            )
    return 1 if stored else 0


def _failed(sessions: sessionmaker[Session], row_ids: list[int], error: str, now: datetime) -> None:
    with sessions.begin() as session:
        for row in session.scalars(
            select(TimestampToken).where(
                TimestampToken.id.in_(row_ids), TimestampToken.status == WAITING
            )
        ):
            _note_failure(row, error, now)


def _note_failure(row: TimestampToken, error: str, now: datetime) -> None:
    row.attempts += 1
    row.last_attempt_at = now
    row.last_error = error
    row.next_attempt_at = now + pause(row.attempts)
