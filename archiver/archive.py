"""Turning raw messages into archived ones: parse, store once, deduplicate, thread, queue.

Everything here is derived from the raw bytes and an envelope, and is idempotent: the same
input archived twice changes nothing the second time, which is what lets the spool worker
simply redo a batch after a crash (invariant 2). Journal copies of one message (same
Message-ID and body) become one message whose envelope recipients are the union of the
copies' (invariant 3).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from archiver import ledger
from archiver.contentcheck.verdict import Verdict
from archiver.locks import transaction_lock
from archiver.models import Attachment, Blob, ContentCheck, IndexQueueEntry, Message, MessageAddress
from archiver.parse import ParsedMessage, parse_message, unwrap_journal_report
from archiver.retention.clock import counts_from
from archiver.store import DirectoryBlobStore, StoredBlob
from archiver.threading_db import BatchThreader
from archiver.threads import subject_key

log = logging.getLogger(__name__)

ENVELOPE_FROM = "envelope_from"
ENVELOPE_TO = "envelope_to"
HEADER_ROLES = ("from", "to", "cc", "bcc", "reply_to")
ARCHIVE_LOCK = "archive"  # serialises the database half of archiving across workers


@dataclass
class RawMessage:
    """A message to archive with what is known of its envelope.

    `journal` marks a copy that came to a journal address, the only kind that may be an
    Exchange journal report to unwrap.
    """

    data: bytes
    envelope_from: str
    envelope_to: list[str]
    received_at: datetime
    source: str
    queue_id: str = ""
    journal: bool = False
    verdict: Verdict | None = None  # the content checks' (None: not checked)


@dataclass
class _Prepared:
    raw: RawMessage
    data: bytes
    sha256: str
    parsed: ParsedMessage
    dedupe_key: str
    envelope_from: str
    envelope_to: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class ArchiveResult:
    """What happened to one input: the message row it is now part of, and whether it is new."""

    message_pk: int
    created: bool


def dedupe_key(message_id: str, body_digest: str) -> str:
    """Copies with the same Message-ID and body are one message, whatever their headers."""
    return hashlib.sha256(
        f"{message_id}\n{body_digest}".encode("utf-8", "surrogatepass")
    ).hexdigest()


def derived_fields(
    parsed: ParsedMessage, received_at: datetime, source: str
) -> dict[str, str | datetime | None]:
    """The message row's columns that follow from its bytes (parsed), its arrival and its
    source: what archiving writes, and what `arsip verify --deep` recomputes to compare."""
    sender = parsed.from_[0] if parsed.from_ else None
    return {
        "dedupe_key": dedupe_key(parsed.message_id, parsed.body_digest),
        "message_id": parsed.message_id,
        "subject": parsed.subject,
        "subject_key": subject_key(parsed.subject),
        "from_address": sender.email if sender else "",
        "from_name": sender.name if sender else "",
        "date": parsed.date,
        "retention_date": counts_from(parsed.date, received_at, source),
        "list_id": parsed.list_id,
    }


def header_roles(parsed: ParsedMessage) -> dict[tuple[str, str], str]:
    """Every (role, address) the headers name, with the display name: the address rows
    archiving writes from the bytes (envelope rows come from the copies' envelopes)."""
    roles: dict[tuple[str, str], str] = {}
    for role in HEADER_ROLES:
        for address in getattr(parsed, "from_" if role == "from" else role):
            if address.email:
                roles.setdefault((role, address.email), address.name)
    return roles


class Archive:
    """Writes archived messages; the caller owns the transaction.

    A batch is written with a handful of set-based statements rather than one ORM flush per
    message: the archive worker and `arsip import` spend their time parsing, not waiting on
    the database.
    """

    def __init__(self, store: DirectoryBlobStore) -> None:
        self.store = store

    def archive_batch(self, session: Session, items: list[RawMessage]) -> list[ArchiveResult]:
        """Archive `items` inside the caller's transaction, blobs made durable first."""
        prepared = [self._prepare(item) for item in items]
        groups: dict[str, list[_Prepared]] = {}
        for p in prepared:
            groups.setdefault(p.dedupe_key, []).append(p)
        # Blobs are written (and synced) before the lock, so workers overlap on the slow
        # part; under it, the archive is looked at again: another worker may have
        # archived a copy meanwhile, and threading needs to see what the others wrote.
        known = _existing(session, groups)
        unknown = {key for key in groups if key not in known}
        blobs = {groups[k][0].sha256: groups[k][0].data for k in unknown}
        stored = self.store.put_many(list(blobs.values()), list(blobs))
        transaction_lock(session, ARCHIVE_LOCK)
        existing = _existing(session, groups)
        fresh = [copies for key, copies in groups.items() if key not in existing]
        late = {c[0].sha256: c[0].data for c in fresh if c[0].dedupe_key not in unknown}
        if late:  # deleted by a retention sweep since the first look
            stored += self.store.put_many(list(late.values()), list(late))
        kept = {copies[0].sha256 for copies in fresh}
        _insert_blob_rows(session, [blob for blob in stored if blob.sha256 in kept])
        created = _insert_messages(session, fresh)
        _insert_verdicts(session, [(created[c[0].dedupe_key], c[0].raw.verdict) for c in fresh])
        # The intake recorded the bytes it took in; what the archive stores instead (a
        # journal report's inner message, a list's copy of a post) is recorded here.
        ledger.record(
            session,
            [
                (copies[0].raw.received_at, copies[0].sha256)
                for copies in fresh
                if copies[0].data is not copies[0].raw.data or copies[0].raw.source == "list"
            ],
        )
        widened = _add_envelopes(session, {existing[k]: groups[k] for k in groups if k in existing})
        ids = existing | created
        now = datetime.now(UTC)
        touched = sorted(set(created.values()) | widened)
        if touched:
            session.execute(
                insert(IndexQueueEntry),
                [{"message_pk": pk, "action": "add", "enqueued_at": now} for pk in touched],
            )
        firsts = {id(copies[0]) for key, copies in groups.items() if key in created}
        return [ArchiveResult(ids[p.dedupe_key], id(p) in firsts) for p in prepared]

    @staticmethod
    def _prepare(item: RawMessage) -> _Prepared:
        data = item.data
        envelope_from = item.envelope_from
        envelope_to = set(item.envelope_to)
        if item.journal:
            report = unwrap_journal_report(data)
            if report is not None:
                data = report.original
                envelope_from = report.sender or envelope_from
                envelope_to.update(report.recipients)
        parsed = parse_message(data, item.received_at)
        return _Prepared(
            raw=item,
            data=data,
            sha256=hashlib.sha256(data).hexdigest(),
            parsed=parsed,
            dedupe_key=dedupe_key(parsed.message_id, parsed.body_digest),
            envelope_from=envelope_from.lower(),
            envelope_to={address.lower() for address in envelope_to},
        )


def _existing(session: Session, groups: dict[str, list[_Prepared]]) -> dict[str, int]:
    """Dedupe key -> message id, for the keys already in the archive."""
    rows = session.execute(
        select(Message.dedupe_key, Message.id).where(Message.dedupe_key.in_(list(groups)))
    )
    return {key: pk for key, pk in rows}


def _insert_blob_rows(session: Session, stored: list[StoredBlob]) -> None:
    """Blob rows for the stored files; a file left by a crashed batch gets its row now."""
    if not stored:
        return
    present = set(
        session.scalars(select(Blob.sha256).where(Blob.sha256.in_([b.sha256 for b in stored])))
    )
    now = datetime.now(UTC)
    rows = {
        blob.sha256: {
            "sha256": blob.sha256,
            "size_raw": blob.size_raw,
            "size_stored": blob.size_stored,
            "created_at": now,
        }
        for blob in stored
        if blob.sha256 not in present
    }
    if rows:
        session.execute(insert(Blob), list(rows.values()))


def _insert_messages(session: Session, groups: list[list[_Prepared]]) -> dict[str, int]:
    """Insert one message per group of copies; returns dedupe key -> new message id."""
    if not groups:
        return {}
    threader = BatchThreader(session, [copies[0].parsed for copies in groups])
    rows = []
    for copies in groups:
        first, parsed = copies[0], copies[0].parsed
        rows.append(
            {
                **derived_fields(parsed, first.raw.received_at, first.raw.source),
                "sha256": first.sha256,
                "size": len(first.data),
                "received_at": first.raw.received_at,
                "envelope_from": first.envelope_from,
                "thread_id": threader.assign(parsed),
                "in_reply_to": parsed.in_reply_to,
                "flags": list(parsed.flags),
                "source": first.raw.source,
            }
        )
    threader.flush()
    inserted = session.execute(
        insert(Message).returning(Message.dedupe_key, Message.id, sort_by_parameter_order=True),
        rows,
    )
    ids = {key: pk for key, pk in inserted}
    addresses = []
    attachments = []
    for copies in groups:
        pk = ids[copies[0].dedupe_key]
        addresses += [
            {"message_pk": pk, "role": role, "address": address, "name": name}
            for (role, address), name in _address_roles(copies).items()
        ]
        attachments += [
            {
                "message_pk": pk,
                "position": position,
                "filename": part.filename,
                "content_type": part.content_type,
                "size": part.size,
                "sha256": part.sha256,
                "has_text": part.text is not None,
            }
            for position, part in enumerate(copies[0].parsed.attachments)
        ]
    if addresses:
        session.execute(insert(MessageAddress), addresses)
    if attachments:
        session.execute(insert(Attachment), attachments)
    return ids


def _insert_verdicts(session: Session, verdicts: list[tuple[int, Verdict | None]]) -> None:
    """What spamd and clamd said of the new messages that were checked."""
    now = datetime.now(UTC)
    rows = [
        {
            "message_pk": pk,
            "checked_at": now,
            "spam_score": verdict.spam_score,
            "spam_threshold": verdict.spam_threshold,
            "spam_rules": ",".join(verdict.spam_rules),
            "spam": verdict.is_spam,
            "virus": verdict.virus,
            "unchecked": ",".join(verdict.unchecked),
        }
        for pk, verdict in verdicts
        if verdict is not None
    ]
    if rows:
        session.execute(insert(ContentCheck), rows)


def _address_roles(copies: list[_Prepared]) -> dict[tuple[str, str], str]:
    """Every (role, address) of a message, headers from the first copy, envelopes from all."""
    roles = header_roles(copies[0].parsed)
    roles.update(_envelope_roles(copies))
    return roles


def _envelope_roles(copies: list[_Prepared]) -> dict[tuple[str, str], str]:
    roles: dict[tuple[str, str], str] = {}
    for copy in copies:
        if copy.envelope_from:
            roles[(ENVELOPE_FROM, copy.envelope_from)] = ""
        for address in copy.envelope_to:
            roles[(ENVELOPE_TO, address)] = ""
    return roles


def _add_envelopes(session: Session, known: dict[int, list[_Prepared]]) -> set[int]:
    """Add journal copies' envelope addresses to the messages they duplicate (the union).

    Returns the ids of the messages that gained an address (their index entry is stale).
    """
    if not known:
        return set()
    rows = session.execute(
        select(MessageAddress.message_pk, MessageAddress.role, MessageAddress.address).where(
            MessageAddress.message_pk.in_(list(known)),
            MessageAddress.role.in_([ENVELOPE_FROM, ENVELOPE_TO]),
        )
    )
    have = {(pk, role, address) for pk, role, address in rows}
    rows = [
        {"message_pk": pk, "role": role, "address": address, "name": ""}
        for pk, copies in known.items()
        for role, address in _envelope_roles(copies)
        if (pk, role, address) not in have
    ]
    if rows:
        session.execute(insert(MessageAddress), rows)
    return {row["message_pk"] for row in rows}
