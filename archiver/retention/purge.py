"""Deleting a set of messages on an operator's word (a list's archive, when the list is
deleted with `--purge`), with the sweep's guarantees: a message under a legal hold stays
(invariant 7), and each deletion removes blob, rows and index entries together and is
audited (`sweep.delete_messages`, the one way messages are deleted).

The caller names the messages by a condition on `Message`; they are read by id in
batches, one transaction each, so a large archive costs no more memory than a batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session, sessionmaker

from archiver.models import IndexQueueEntry, Message
from archiver.retention.rules import holds
from archiver.retention.sweep import (
    BATCH_SIZE,
    HoldRule,
    custodian_addresses,
    delete_messages,
    hold_rule,
)
from archiver.search.backend import SearchBackend
from archiver.store import DirectoryBlobStore


@dataclass
class PurgeReport:
    """What a purge deleted, and what it kept: under a hold, or (while a hold's query
    could not yet say whether it covers them) waiting for the search index."""

    deleted: int = 0
    kept_by_holds: int = 0
    waiting_for_index: int = 0
    per_hold: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The report as the audit entry of a list's deletion records it."""
        return asdict(self)


def purge_messages(
    sessions: sessionmaker[Session],
    store: DirectoryBlobStore,
    backend: SearchBackend,
    which: ColumnElement[bool],
    actor: str,
    details: dict[str, Any],
) -> PurgeReport:
    """Delete every message matching `which` that no active hold covers; each deletion
    is audited as `message.delete` with `details` (why it went)."""
    report = PurgeReport()
    with sessions() as session:
        rules = [hold_rule(hold, backend) for hold in holds(session)]
    custodians = frozenset(address for rule in rules for address in rule.custodians)
    by_query = any(rule.matches is not None for rule in rules)
    for batch in message_batches(sessions, which):
        pks = [row.id for row in batch]
        with sessions() as session:
            addresses = custodian_addresses(session, pks, custodians)
            pending = set(
                session.scalars(
                    select(IndexQueueEntry.message_pk).where(IndexQueueEntry.message_pk.in_(pks))
                )
            )
        doomed = []
        for row in batch:
            if by_query and row.id in pending:
                report.waiting_for_index += 1
                continue
            covering = _covering(rules, row, addresses.get(row.id, frozenset()))
            if covering:
                report.kept_by_holds += 1
                for name in covering:
                    report.per_hold[name] = report.per_hold.get(name, 0) + 1
            else:
                doomed.append((row.id, row.sha256, row.message_id, details))
        if doomed:
            report.deleted += delete_messages(sessions, store, actor, doomed)
    return report


def _covering(rules: list[HoldRule], row: Any, addresses: frozenset[str]) -> list[str]:
    return [rule.name for rule in rules if rule.covers(row.id, row.retention_date, addresses)]


def message_batches(
    sessions: sessionmaker[Session], which: ColumnElement[bool]
) -> Iterator[list[Any]]:
    """The messages matching `which`, by id, a batch at a time: their id, sha256,
    Message-ID, `Date:` and retention date (a deletion's audit entry and the holds need
    them; a data subject's erasure also shows the date)."""
    after = 0
    while True:
        query = (
            select(
                Message.id,
                Message.sha256,
                Message.message_id,
                Message.date,
                Message.retention_date,
            )
            .where(which, Message.id > after)
            .order_by(Message.id)
            .limit(BATCH_SIZE)
        )
        with sessions() as session:
            rows = session.execute(query).all()
        if not rows:
            return
        yield rows
        after = rows[-1].id
