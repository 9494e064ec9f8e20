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

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from archiver.models import (
    Attachment,
    Blob,
    IndexQueueEntry,
    Message,
    MessageAddress,
    ThreadRef,
)
from archiver.parse import ParsedMessage, parse_message, unwrap_journal_report
from archiver.store import DirectoryBlobStore, StoredBlob
from archiver.threads import (
    SUBJECT_WINDOW,
    is_reply_subject,
    new_thread_id,
    subject_key,
    thread_candidates,
)

log = logging.getLogger(__name__)

ENVELOPE_FROM = "envelope_from"
ENVELOPE_TO = "envelope_to"
HEADER_ROLES = ("from", "to", "cc", "bcc", "reply_to")


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


class Archive:
    """Writes archived messages; the caller owns the transaction."""

    def __init__(self, store: DirectoryBlobStore) -> None:
        self.store = store

    def archive_batch(self, session: Session, items: list[RawMessage]) -> list[ArchiveResult]:
        """Archive `items` inside the caller's transaction, blobs made durable first."""
        prepared = [self._prepare(item) for item in items]
        keys = {p.dedupe_key for p in prepared}
        known = {
            m.dedupe_key: m
            for m in session.scalars(select(Message).where(Message.dedupe_key.in_(keys)))
        }
        new_blobs: dict[str, bytes] = {}
        for p in prepared:
            if p.dedupe_key not in known:
                new_blobs.setdefault(p.sha256, p.data)
        stored = self.store.put_many(list(new_blobs.values()), list(new_blobs))
        self._record_blobs(session, stored)
        results = []
        for p in prepared:
            existing = known.get(p.dedupe_key)
            if existing is None:
                message = self._insert(session, p)
                known[p.dedupe_key] = message
                results.append(ArchiveResult(message.id, True))
            else:
                self._merge_envelope(session, existing, p)
                results.append(ArchiveResult(existing.id, False))
        return results

    def _prepare(self, item: RawMessage) -> _Prepared:
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

    @staticmethod
    def _record_blobs(session: Session, stored: list[StoredBlob]) -> None:
        """Blob rows for the stored files; a file left by a crashed batch gets its row now."""
        if not stored:
            return
        present = set(
            session.scalars(select(Blob.sha256).where(Blob.sha256.in_([b.sha256 for b in stored])))
        )
        now = datetime.now(UTC)
        for blob in stored:
            if blob.sha256 not in present:
                present.add(blob.sha256)
                session.add(
                    Blob(
                        sha256=blob.sha256,
                        size_raw=blob.size_raw,
                        size_stored=blob.size_stored,
                        created_at=now,
                    )
                )

    def _insert(self, session: Session, p: _Prepared) -> Message:
        parsed = p.parsed
        sender = parsed.from_[0] if parsed.from_ else None
        message = Message(
            dedupe_key=p.dedupe_key,
            message_id=parsed.message_id,
            sha256=p.sha256,
            size=len(p.data),
            subject=parsed.subject,
            subject_key=subject_key(parsed.subject),
            from_address=sender.email if sender else "",
            from_name=sender.name if sender else "",
            date=parsed.date,
            received_at=p.raw.received_at,
            envelope_from=p.envelope_from,
            thread_id=assign_thread(session, parsed),
            in_reply_to=parsed.in_reply_to,
            list_id=parsed.list_id,
            body_text=parsed.body_text,
            flags=list(parsed.flags),
            source=p.raw.source,
        )
        message.addresses = _addresses(p)
        message.attachments = [
            Attachment(
                position=position,
                filename=part.filename,
                content_type=part.content_type,
                size=part.size,
                sha256=part.sha256,
                text=part.text,
            )
            for position, part in enumerate(parsed.attachments)
        ]
        session.add(message)
        session.flush()
        session.add(
            IndexQueueEntry(message_pk=message.id, action="add", enqueued_at=datetime.now(UTC))
        )
        log.info(
            "queue_id=%s archived message_id=<%s> as %d thread=%s",
            p.raw.queue_id or "-",
            parsed.message_id,
            message.id,
            message.thread_id,
        )
        return message

    @staticmethod
    def _merge_envelope(session: Session, message: Message, p: _Prepared) -> None:
        """Add a journal copy's envelope recipients to the message it duplicates."""
        have = {(a.role, a.address) for a in message.addresses}
        wanted = {(ENVELOPE_TO, address) for address in p.envelope_to}
        if p.envelope_from:
            wanted.add((ENVELOPE_FROM, p.envelope_from))
        added = wanted - have
        for role, address in sorted(added):
            message.addresses.append(MessageAddress(role=role, address=address, name=""))
        if added:
            session.flush()
            session.add(
                IndexQueueEntry(message_pk=message.id, action="add", enqueued_at=datetime.now(UTC))
            )
        log.info(
            "queue_id=%s duplicate of message %d, %d envelope addresses added",
            p.raw.queue_id or "-",
            message.id,
            len(added),
        )


def _addresses(p: _Prepared) -> list[MessageAddress]:
    parsed = p.parsed
    rows: dict[tuple[str, str], str] = {}
    for role in HEADER_ROLES:
        for address in getattr(parsed, "from_" if role == "from" else role):
            rows.setdefault((role, address.email), address.name)
    if p.envelope_from:
        rows.setdefault((ENVELOPE_FROM, p.envelope_from), "")
    for address in p.envelope_to:
        rows.setdefault((ENVELOPE_TO, address), "")
    return [
        MessageAddress(role=role, address=address, name=name)
        for (role, address), name in rows.items()
        if address
    ]


def assign_thread(session: Session, parsed: ParsedMessage) -> str:
    """Find or start the thread of a message, merging threads it turns out to join."""
    candidates = thread_candidates(parsed.message_id, parsed.references, parsed.in_reply_to)
    rows = session.execute(
        select(ThreadRef.message_id, ThreadRef.thread_id).where(
            ThreadRef.message_id.in_(candidates)
        )
    )
    known = {message_id: thread_id for message_id, thread_id in rows}
    found = [known[mid] for mid in candidates if mid in known]
    if found:
        target = found[0]
    else:
        target = _thread_by_subject(session, parsed) or new_thread_id(candidates[0])
    merged = set(found) - {target}
    if merged:
        session.execute(
            update(Message).where(Message.thread_id.in_(merged)).values(thread_id=target)
        )
        session.execute(
            update(ThreadRef).where(ThreadRef.thread_id.in_(merged)).values(thread_id=target)
        )
    for mid in candidates:
        if mid not in known:
            session.add(ThreadRef(message_id=mid, thread_id=target))
    session.flush()
    return target


def _thread_by_subject(session: Session, parsed: ParsedMessage) -> str | None:
    """The subject fallback: only for a reply that carries no references at all."""
    if parsed.references or parsed.in_reply_to or not is_reply_subject(parsed.subject):
        return None
    key = subject_key(parsed.subject)
    if not key:
        return None
    return session.scalar(
        select(Message.thread_id)
        .where(
            Message.subject_key == key,
            Message.date >= parsed.date - SUBJECT_WINDOW,
            Message.date <= parsed.date,
        )
        .order_by(Message.date.desc())
        .limit(1)
    )
