"""The audit trail: an append-only, hash-chained log of who did what.

Auditors and lawyers rely on it to show that access to the archive and every deletion
happened as recorded. Each entry carries the hash of the one before, so editing or
removing an entry breaks the chain from there on, and a one-row head holds the count and
the newest hash, so cutting entries off the end is found too.

Entries are written in the caller's transaction: an action and its record commit or roll
back together. The head row is updated first, which serialises writers on SQLite (the
write lock) and on PostgreSQL (the row lock) alike, so two processes never chain onto
the same predecessor.
"""

from __future__ import annotations

import getpass
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Integer,
    String,
    Text,
    insert,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from archiver.models import Base, UtcDateTime, utcnow

GENESIS = "0" * 64  # the "previous hash" of the first entry, and the head of an empty log
SYSTEM = "system"  # the actor of scheduled jobs
ANONYMOUS = "anonymous"  # the actor of a failed login: nobody has proved who they are
LISTED = 100  # how many values of a long list `capped` keeps in an entry's details


class AuditEntry(Base):
    """One recorded action. Never updated or deleted by Arsip."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(320), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    previous: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The single row holding the log's length and its newest hash."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    count: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


def entry_hash(
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    target: str,
    details: dict[str, Any],
    previous: str,
) -> str:
    """The sha256 of an entry's fields in a canonical JSON form, chained to `previous`."""
    canonical = json.dumps(
        [seq, at.isoformat(), actor, action, target, details, previous],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def record(
    session: Session,
    actor: str,
    action: str,
    target: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    """Append one entry in `session`'s transaction (the caller commits).

    `actor` is who acted (an account's email, `cli:USER` for the command line, `system`
    for scheduled jobs); `action` a dotted name such as `message.view` or `hold.add`;
    `target` what it acted on (a Message-ID, a policy's name). `details` must hold no
    secrets and no message contents: ids, hashes, counts, queries.
    """
    record_many(session, actor, action, [(target, details or {})])


def record_many(
    session: Session, actor: str, action: str, items: Sequence[tuple[str, dict[str, Any]]]
) -> None:
    """Append one entry per (target, details) in `items`, chained in order, with one head
    update and one bulk insert: a retention sweep records thousands of deletions a batch."""
    if not items:
        return
    head = session.execute(
        update(AuditHead)
        .where(AuditHead.id == 1)
        .values(count=AuditHead.count + len(items))
        .returning(AuditHead.count, AuditHead.hash)
    ).one()
    seq, previous = int(head[0]) - len(items), str(head[1])
    at = utcnow()
    rows = []
    for target, details in items:
        seq += 1
        details = json.loads(json.dumps(details, default=str))  # as the column reads back
        digest = entry_hash(seq, at, actor, action, target, details, previous)
        rows.append(
            {
                "seq": seq,
                "at": at,
                "actor": actor,
                "action": action,
                "target": target,
                "details": details,
                "previous": previous,
                "hash": digest,
            }
        )
        previous = digest
    session.execute(insert(AuditEntry), rows)
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(hash=previous))


@dataclass(frozen=True)
class ChainProblem:
    """Where the chain breaks, and how."""

    seq: int
    problem: str


def verify(session: Session, on_entry: Callable[[], object] | None = None) -> list[ChainProblem]:
    """Every break in the chain: an edited entry, a missing one, or a head that disagrees.

    Reads the log in order in batches, so it needs little memory however long it is;
    `on_entry` is called once per entry read, for a progress bar.
    """
    problems: list[ChainProblem] = []
    expected_seq, previous = 1, GENESIS
    for entry in _entries(session):
        if on_entry is not None:
            on_entry()
        if entry.seq != expected_seq:
            problems.append(
                ChainProblem(expected_seq, f"entries {expected_seq}..{entry.seq - 1} are missing")
            )
        if entry.previous != previous:
            problems.append(ChainProblem(entry.seq, "does not chain to the entry before it"))
        recomputed = entry_hash(
            entry.seq,
            entry.at,
            entry.actor,
            entry.action,
            entry.target,
            entry.details,
            entry.previous,
        )
        if recomputed != entry.hash:
            problems.append(ChainProblem(entry.seq, "was changed after it was written"))
        expected_seq, previous = entry.seq + 1, entry.hash
    head = session.get(AuditHead, 1)
    if head is None:
        problems.append(ChainProblem(0, "the head row is missing"))
    elif head.count != expected_seq - 1 or head.hash != previous:
        problems.append(
            ChainProblem(
                head.count,
                f"the head says {head.count} entries ending in {head.hash[:12]}, "
                f"the log has {expected_seq - 1} ending in {previous[:12]}",
            )
        )
    return problems


def _entries(session: Session, batch: int = 5_000) -> Iterator[AuditEntry]:
    after = 0
    while True:
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.seq > after).order_by(AuditEntry.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        after = rows[-1].seq
        session.expunge_all()


def cli_actor() -> str:
    """The actor of a command-line action: `cli:` and the operating-system user.

    The database cannot tell who ran a command; the login name is the best witness there
    is (a cron job or a container may have none, hence the fallback).
    """
    try:
        name = getpass.getuser()
    except (OSError, KeyError, ImportError):
        name = "unknown"
    return f"cli:{name or 'unknown'}"


def capped(values: Sequence[str], limit: int = LISTED) -> list[str]:
    """At most `limit` of `values`, for details that name many things (addresses, ids).

    An entry stays small however many members one command adds; the caller records the
    full count beside it.
    """
    return list(values[:limit])


def changes(row: object) -> dict[str, list[Any]]:
    """The columns of an ORM `row` changed in its session so far, as [before, after] pairs.

    An entry for a settings change says what changed from what, and stays short when one
    setting of many was touched. Call it before the session flushes.
    """
    state = inspect(row)
    found: dict[str, list[Any]] = {}
    for column in state.mapper.column_attrs:
        history = state.attrs[column.key].history
        if history.has_changes():
            before = history.deleted[0] if history.deleted else None
            after = history.added[0] if history.added else None
            if before != after:
                found[column.key] = [before, after]
    return found


def parse_when(text: str) -> datetime:
    """A date (`2026-01-31`) or ISO time as an aware UTC datetime; ValueError if neither.

    Times without a zone are read as UTC, the zone every entry is stored in.
    """
    parsed = datetime.fromisoformat(text.strip())
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def read_snapshot(session: Session) -> None:
    """Make the rest of `session`'s reads one consistent snapshot of the database.

    `verify` reads the entries and then the head; on a live log, entries appended in
    between would look like a head that disagrees. Call this before the session's first
    statement. PostgreSQL gets a REPEATABLE READ transaction; SQLite (whose driver opens
    transactions only for writes) an explicit BEGIN, which in WAL mode pins the snapshot.
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("BEGIN"))
    else:
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


def head(session: Session) -> AuditHead | None:
    """The head row: how many entries there are and the newest hash (None if it is gone)."""
    return session.get(AuditHead, 1)


def entries(
    session: Session,
    *,
    action: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: int | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """Entries newest first, filtered, for people to read (`verify` reads in chain order).

    `action` matches itself and the actions below it (`message` finds `message.view` and
    `message.raw`); `actor` matches exactly; `since` is inclusive and `until` exclusive,
    as in `arsip export`. `before` is a sequence number: pages are cut by it rather than
    by an offset, so a page stays cheap and stable while new entries arrive.
    """
    query = select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit)
    if action:
        query = query.where(
            or_(
                AuditEntry.action == action,
                AuditEntry.action.startswith(action + ".", autoescape=True),
            )
        )
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if until is not None:
        query = query.where(AuditEntry.at < until)
    if before is not None:
        query = query.where(AuditEntry.seq < before)
    return list(session.scalars(query))


def as_json(entry: AuditEntry) -> dict[str, Any]:
    """An entry as plain JSON values, with everything `verify` needs to recheck it."""
    return {
        "seq": entry.seq,
        "at": entry.at.isoformat(),
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "details": entry.details,
        "previous": entry.previous,
        "hash": entry.hash,
    }
