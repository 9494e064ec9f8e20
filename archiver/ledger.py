"""Tamper evidence for the archive: every stored message's sha256, chained day by day.

The intake records the hash of each message it accepts in the same transaction as the
spool row, so the ledger holds exactly what was acknowledged. Once a day is over, its
hashes are sealed into one digest that also covers the previous day's seal; changing,
adding or removing a message of a sealed day, or a seal, breaks every seal after it.
Retention deletes messages but never ledger rows: a hash reveals nothing of the mail, and
a ledger that lost rows could no longer prove that the rest is complete. Nothing but
the spool's commit, `record` and `seal_finished_days` writes these tables, and only
ever adds to them.

The chain can be exported (`export_chain`) as JSON lines that a third party checks with
nothing but a JSON parser and sha256 (`check_export` does the same here): that each day's
digest follows from its hashes and the day before, and that a given message's sha256 is
among the hashes of the day it was received.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import IO, Any

from sqlalchemy import BigInteger, String, func, insert, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from archiver.models import Base, BigId, Message, UtcDateTime

GENESIS = "0" * 64  # the "previous digest" of the first seal
SEAL_TAG = "arsip-ledger-seal-v1"
EXPORT_FORMAT = "arsip-ledger-chain"
EXPORT_VERSION = 1
# A day is sealed only this long after it ended: a batch that took its time stamp just
# before midnight and committed just after, or an intake whose clock is a little behind,
# still lands in the day before that day is sealed.
SEAL_GRACE = timedelta(minutes=10)


class LedgerEntry(Base):
    """The sha256 of one accepted message, as the intake stored it."""

    __tablename__ = "intake_ledger"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    # No index: it would make every intake batch pay random-key inserts, and verification
    # finds unrecorded messages with one anti-join that needs none.
    sha256: Mapped[str] = mapped_column(String(64))


class DaySeal(Base):
    """The digest of one UTC day of the ledger, chained to the day sealed before it."""

    __tablename__ = "ledger_seals"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD, UTC
    count: Mapped[int] = mapped_column(BigInteger)
    previous: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64))
    sealed_at: Mapped[datetime] = mapped_column(UtcDateTime)


LEDGER_TABLE = LedgerEntry.__table__


def record(session: Session, entries: Sequence[tuple[datetime, str]]) -> None:
    """Add (received_at, sha256) rows inside the caller's transaction (one statement).

    For paths into the archive that bypass the spool, such as `arsip import`; the intake
    itself inserts into `LEDGER_TABLE` next to its spool rows.
    """
    if entries:
        session.execute(
            insert(LedgerEntry), [{"received_at": at, "sha256": sha} for at, sha in entries]
        )


def day_digest(previous: str, day: str, sha256s: Sequence[str]) -> str:
    """The seal of one day, which anyone can recompute from the exported chain.

    The digest is the lowercase hex sha256 of these ASCII lines, each ending in one LF
    (0x0A), with nothing before the first or after the last:

        arsip-ledger-seal-v1
        <previous: the digest of the previous sealed day, or 64 zeros for the first>
        <day: YYYY-MM-DD, UTC>
        <count: number of hashes, decimal, no leading zeros>
        <sha256 of the first message of the day, 64 lowercase hex digits>
        ...
        <sha256 of the last message of the day>

    The hashes are in the order the ledger recorded them (ledger id order). Days without
    mail have no seal: the chain goes from one sealed day straight to the next.
    """
    hasher = hashlib.sha256(f"{SEAL_TAG}\n{previous}\n{day}\n{len(sha256s)}\n".encode())
    for sha256 in sha256s:
        hasher.update(f"{sha256}\n".encode())
    return hasher.hexdigest()


def _start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def day_hashes(session: Session, day: date) -> list[str]:
    """The ledger's hashes of one UTC day, in the order they were recorded."""
    return list(
        session.scalars(
            select(LedgerEntry.sha256)
            .where(
                LedgerEntry.received_at >= _start(day),
                LedgerEntry.received_at < _start(day + timedelta(days=1)),
            )
            .order_by(LedgerEntry.id)
        )
    )


def seal_finished_days(session: Session, now: datetime | None = None) -> int:
    """Seal every finished day with mail that follows the last seal; returns how many.

    A day counts as finished `SEAL_GRACE` after its end. Seals are only appended: a day
    before the last seal that had no mail then stays unsealed for good, and hashes that
    turn up later in an already sealed day (an intake clock far behind) are left out of
    its seal. `verify_chain` reports both as warnings, naming the day, since they add to
    the ledger but hide nothing in it. Run from one place at a time (the scheduler, or
    `arsip verify`): two sealers at once make one of them fail on the day's primary key.
    """
    now = now or datetime.now(UTC)
    end = _start((now - SEAL_GRACE).astimezone(UTC).date())
    last = session.scalars(select(DaySeal).order_by(DaySeal.day.desc()).limit(1)).first()
    previous = last.digest if last is not None else GENESIS
    start = _start(date.fromisoformat(last.day) + timedelta(days=1)) if last else None
    sealed = 0
    while True:
        query = select(func.min(LedgerEntry.received_at)).where(LedgerEntry.received_at < end)
        if start is not None:
            query = query.where(LedgerEntry.received_at >= start)
        first = session.scalar(query)
        if first is None:
            return sealed
        day = first.astimezone(UTC).date()
        hashes = day_hashes(session, day)
        digest = day_digest(previous, day.isoformat(), hashes)
        session.add(
            DaySeal(
                day=day.isoformat(),
                count=len(hashes),
                previous=previous,
                digest=digest,
                sealed_at=now,
            )
        )
        session.flush()
        previous, start = digest, _start(day + timedelta(days=1))
        sealed += 1


@dataclass(frozen=True)
class DayIssue:
    """Something wrong (or worth knowing) about one day of the chain."""

    day: str
    text: str


@dataclass
class ChainReport:
    """What checking the seal chain found."""

    seals: int = 0
    entries: int = 0  # hashes covered by the seals
    unsealed: int = 0  # hashes after the last sealed day (today, or not sealed yet)
    head: str = GENESIS  # the last seal's digest
    problems: list[DayIssue] = field(default_factory=list)
    warnings: list[DayIssue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_seal(
    report: ChainReport,
    day: str,
    count: int,
    previous: str,
    digest: str,
    hashes: Sequence[str],
) -> None:
    """Check one seal against its hashes and the seal before it (`report.head`)."""
    if previous != report.head:
        report.problems.append(
            DayIssue(day, "does not follow the seal before it (a seal was removed or changed)")
        )
    if len(hashes) == count and day_digest(previous, day, hashes) == digest:
        report.entries += count
    elif len(hashes) > count and day_digest(previous, day, hashes[:count]) == digest:
        report.entries += count
        late = len(hashes) - count
        report.warnings.append(
            DayIssue(day, f"{late} {_entries(late)} recorded after the day was sealed")
        )
    else:
        report.problems.append(
            DayIssue(
                day,
                f"ledger does not match its seal (sealed {count} {_entries(count)}, "
                f"found {len(hashes)}): an entry or the seal was changed, added or removed",
            )
        )
    report.seals += 1
    report.head = digest


def _entries(count: int) -> str:
    return "entry" if count == 1 else "entries"


def verify_chain(session: Session, on_day: Callable[[], None] | None = None) -> ChainReport:
    """Recompute every seal from the ledger and check that each follows the one before.

    A changed, added or removed hash in a sealed day, or a changed seal, is a problem
    named by its day; a removed seal shows as the next seal not following its
    predecessor. Removing the newest seals cannot be seen from inside the database:
    that is what exported copies held by someone else are for.
    """
    report = ChainReport()
    seals = list(session.scalars(select(DaySeal).order_by(DaySeal.day)))
    gap_from: date | None = None
    for seal in seals:
        day = date.fromisoformat(seal.day)
        _warn_unsealed(session, report, gap_from, day)
        _check_seal(
            report, seal.day, seal.count, seal.previous, seal.digest, day_hashes(session, day)
        )
        gap_from = day + timedelta(days=1)
        if on_day is not None:
            on_day()
    after = select(func.count()).select_from(LedgerEntry)
    if gap_from is not None:
        after = after.where(LedgerEntry.received_at >= _start(gap_from))
    report.unsealed = session.scalar(after) or 0
    return report


def _warn_unsealed(session: Session, report: ChainReport, since: date | None, day: date) -> None:
    """Warn about hashes on unsealed days between two seals (or before the first)."""
    query = select(func.count()).where(LedgerEntry.received_at < _start(day))
    if since is not None:
        query = query.where(LedgerEntry.received_at >= _start(since))
    found = session.scalar(query) or 0
    if found:
        last = (day - timedelta(days=1)).isoformat()
        first = since.isoformat() if since is not None else ""
        span = last if first == last else f"{first}..{last}"
        report.warnings.append(
            DayIssue(
                span,
                f"{found} {_entries(found)} on days that were not sealed while later days were",
            )
        )


def unrecorded_messages(session: Session) -> tuple[int, list[tuple[str, str]]]:
    """Messages whose sha256 the ledger does not hold: (messages checked, [(sha256,
    Message-ID)] of the unaccounted ones)."""
    checked = session.scalar(select(func.count()).select_from(Message)) or 0
    # An anti-join rather than NOT EXISTS: the databases plan it well (a hash or
    # automatic index) even without an index on the ledger's sha256.
    missing = session.execute(
        select(Message.sha256, Message.message_id)
        .outerjoin(LedgerEntry, LedgerEntry.sha256 == Message.sha256)
        .where(LedgerEntry.id.is_(None))
        .order_by(Message.id)
    )
    return checked, [(sha256, message_id) for sha256, message_id in missing]


def export_chain(session: Session, out: IO[str], now: datetime | None = None) -> ChainReport:
    """Write the seal chain as JSON lines for a third party; returns what was written.

    The first line is a header, then one line per sealed day in day order:

        {"format": "arsip-ledger-chain", "version": 1, "genesis": "000…",
         "seals": <number of seal lines that follow>, "exported_at": "<ISO time, UTC>",
         "digest": "<how a seal's digest is computed, in words>"}
        {"day": "2026-02-02", "count": 3, "previous": "<hex>", "digest": "<hex>",
         "sha256s": ["<hex>", "<hex>", "<hex>"]}

    Each day lists the hashes its seal covers, in ledger order: entries recorded after a
    day was sealed are not part of its seal and are left out.
    """
    seals = list(session.scalars(select(DaySeal).order_by(DaySeal.day)))
    header = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "genesis": GENESIS,
        "seals": len(seals),
        "exported_at": (now or datetime.now(UTC)).isoformat(),
        "digest": (
            "sha256 of the LF-terminated ASCII lines: "
            f"'{SEAL_TAG}', previous, day, count, then each of sha256s"
        ),
    }
    out.write(json.dumps(header) + "\n")
    report = ChainReport()
    for seal in seals:
        hashes = day_hashes(session, date.fromisoformat(seal.day))[: seal.count]
        line = {
            "day": seal.day,
            "count": seal.count,
            "previous": seal.previous,
            "digest": seal.digest,
            "sha256s": hashes,
        }
        out.write(json.dumps(line) + "\n")
        report.seals += 1
        report.entries += len(hashes)
        report.head = seal.digest
    return report


class ExportFormatError(ValueError):
    """The file is not an exported chain this version can read."""


def check_export(lines: Iterable[str]) -> ChainReport:
    """Recompute an exported chain from the file alone (what a third party would do).

    Raises `ExportFormatError` for a file that is not an export; a chain that does not
    hold together gives a report with problems, each naming its day.
    """
    rows = iter(lines)
    try:
        header = json.loads(next(rows))
    except (StopIteration, json.JSONDecodeError) as exc:
        raise ExportFormatError("not an exported ledger chain (no JSON header line)") from exc
    if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT:
        raise ExportFormatError("not an exported ledger chain (unknown format)")
    if header.get("version") != EXPORT_VERSION:
        raise ExportFormatError(f"export version {header.get('version')!r} is not supported")
    report = ChainReport(head=header.get("genesis", GENESIS))
    last_day = ""
    for number, text in enumerate(rows, start=2):
        if not text.strip():
            continue
        seal = _seal_line(text, number)
        if seal["day"] <= last_day:
            report.problems.append(DayIssue(seal["day"], "is out of order or repeated"))
        last_day = seal["day"]
        _check_seal(
            report, seal["day"], seal["count"], seal["previous"], seal["digest"], seal["sha256s"]
        )
    if report.seals != header.get("seals"):
        report.problems.append(
            DayIssue(
                last_day or "-",
                f"the file holds {report.seals} seals, its header says {header.get('seals')}",
            )
        )
    return report


def _seal_line(text: str, number: int) -> dict[str, Any]:
    try:
        seal = json.loads(text)
        ok = (
            isinstance(seal["day"], str)
            and isinstance(seal["count"], int)
            and isinstance(seal["previous"], str)
            and isinstance(seal["digest"], str)
            and isinstance(seal["sha256s"], list)
            and all(isinstance(sha, str) for sha in seal["sha256s"])
        )
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ExportFormatError(f"line {number}: not a seal ({exc})") from exc
    if not ok:
        raise ExportFormatError(f"line {number}: not a seal")
    return seal
