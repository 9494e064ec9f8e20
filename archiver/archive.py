"""Turning raw messages into archived ones: parse, store once, deduplicate, thread, queue.

Everything here is derived from the raw bytes and an envelope, and is idempotent: the same
input archived twice changes nothing the second time, which is what lets the spool worker
simply redo a batch after a crash (invariant 2). Journal copies of one message (the same
body and identifying headers) become one message whose envelope recipients are the union
of the copies' (invariant 3).

What a copy may say about who a message concerns depends on where it came from, and
`_recorded_roles` is the one place that decides it. A trusted copy (from a journal source
in `ARSIP_JOURNAL_CLIENTS`, or the operator's `arsip import`) records every role, its
envelope and Bcc recipients included; the list engine's copy records the header roles
but no envelope or Bcc; any other copy (mail to postmaster@) records none, so it is seen
only by those who see everything (flagged `unattributed` until a copy of the other kinds
arrives). So every `envelope_from`, `envelope_to` and `bcc` row in the archive came from a
trusted copy. A message's list is set only by the list engine
(`RawMessage.list_id`), never by a `List-Id:` header.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from archiver import ledger
from archiver.contentcheck.verdict import Verdict
from archiver.folders import add_folders
from archiver.locks import transaction_lock
from archiver.models import Attachment, Blob, ContentCheck, IndexQueueEntry, Message, MessageAddress
from archiver.parse import ParsedMessage, parse_message, unwrap_journal_report
from archiver.retention.clock import counts_from
from archiver.store import DirectoryBlobStore, StoredBlob
from archiver.store.errors import BlobCorruptError, BlobMissingError
from archiver.threading_db import BatchThreader
from archiver.threads import subject_key

log = logging.getLogger(__name__)

ENVELOPE_FROM = "envelope_from"
ENVELOPE_TO = "envelope_to"
HEADER_ROLES = ("from", "to", "cc", "bcc", "reply_to")
ARCHIVE_LOCK = "archive"  # serialises the database half of archiving across workers
# Message flags: a different message under a Message-ID already archived (`is:duplicate-id`),
# and mail to postmaster@ (`is:postmaster`)
DUPLICATE_ID = "duplicate_id"
POSTMASTER = "postmaster"
# A message no trusted or list copy has reached (mail to postmaster@): it has no address
# rows at all, whatever its headers say; the flag goes when such a copy arrives
UNATTRIBUTED = "unattributed"


@dataclass
class RawMessage:
    """A message to archive with what is known of its envelope.

    `journal` marks a copy that came to a journal address, the only kind that may be an
    Exchange journal report to unwrap. `journal_source` marks a copy whose client was a
    trusted journal source (`ARSIP_JOURNAL_CLIENTS`). `list_id` is set by the list engine
    alone, for the copy it files into a list's archive.
    """

    data: bytes
    envelope_from: str
    envelope_to: list[str]
    received_at: datetime
    source: str
    queue_id: str = ""
    journal: bool = False
    verdict: Verdict | None = None  # the content checks' (None: not checked)
    journal_source: bool = False
    postmaster: bool = False  # addressed to postmaster@: kept for the administrators
    list_id: str | None = None
    folder: str = ""  # the PST folder or IMAP mailbox an import found it in (`folders`)

    @property
    def trusted(self) -> bool:
        """Whether this copy may record envelope and Bcc addresses (`_recorded_roles`):
        one from a trusted journal source, or one the operator imported."""
        return self.journal_source or self.source == "import"


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


def dedupe_key(parsed: ParsedMessage) -> str:
    """Copies are one message when their body and identifying headers are the same.

    The identifying headers are Message-ID, From, To, Cc, Subject and Date, as parsed (so a
    header folded or encoded differently at another hop still matches); trace headers
    such as `Received:` may differ, as they do between journal copies of one message. A
    reused Message-ID alone merges nothing: a copy merged into a message adds its
    envelope addresses to it, which must never happen for another message.
    """
    date = "" if "bad_date" in parsed.flags else parsed.date.isoformat()
    people = [[[a.name, a.email] for a in group] for group in (parsed.from_, parsed.to, parsed.cc)]
    identity = [parsed.message_id, parsed.body_digest, parsed.subject, date, people]
    text = json.dumps(identity, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def legacy_dedupe_key(parsed: ParsedMessage) -> str:
    """The key messages archived before migration 0013 have: Message-ID and body only."""
    text = f"{parsed.message_id}\n{parsed.body_digest}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def derived_fields(
    parsed: ParsedMessage, received_at: datetime, source: str
) -> dict[str, str | datetime | None]:
    """The message row's columns that follow from its bytes (parsed), its arrival and its
    source: what archiving writes, and what `arsip verify --deep` recomputes to compare."""
    sender = parsed.from_[0] if parsed.from_ else None
    return {
        "dedupe_key": dedupe_key(parsed),
        "message_id": parsed.message_id,
        "subject": parsed.subject,
        "subject_key": subject_key(parsed.subject),
        "from_address": sender.email if sender else "",
        "from_name": sender.name if sender else "",
        "date": parsed.date,
        "retention_date": counts_from(parsed.date, received_at, source),
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
        known = self._existing(session, groups)
        unknown = {key for key in groups if key not in known}
        blobs = {groups[k][0].sha256: groups[k][0].data for k in unknown}
        stored = self.store.put_many(list(blobs.values()), list(blobs))
        transaction_lock(session, ARCHIVE_LOCK)
        existing = self._existing(session, groups)
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
        widened = _add_roles(session, {existing[k]: groups[k] for k in groups if k in existing})
        ids = existing | created
        # A copy imported from another folder files the message there too.
        widened |= add_folders(session, [(ids[p.dedupe_key], p.raw.folder) for p in prepared])
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
        if item.journal and item.trusted:
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
            dedupe_key=dedupe_key(parsed),
            envelope_from=envelope_from.lower(),
            envelope_to={address.lower() for address in envelope_to},
        )

    def _existing(self, session: Session, groups: dict[str, list[_Prepared]]) -> dict[str, int]:
        """Dedupe key -> message id, for the groups whose message is already archived.

        A message archived before migration 0013 has the old key (Message-ID and body):
        when a copy's old key finds one, the stored message is parsed again and taken as
        the same only if its identifying headers match too; its key is then brought up
        to date, so this happens once per old message.
        """
        rows = session.execute(
            select(Message.dedupe_key, Message.id).where(Message.dedupe_key.in_(list(groups)))
        )
        found = {key: pk for key, pk in rows}
        legacy: dict[str, set[str]] = {}
        for key, copies in groups.items():
            if key not in found:
                legacy.setdefault(legacy_dedupe_key(copies[0].parsed), set()).add(key)
        if not legacy:
            return found
        rows = session.execute(
            select(Message.dedupe_key, Message.id, Message.sha256, Message.received_at).where(
                Message.dedupe_key.in_(list(legacy))
            )
        )
        for old_key, pk, sha256, received_at in rows:
            try:
                stored = self.store.get(sha256)
            except (BlobMissingError, BlobCorruptError) as exc:  # so it cannot be compared
                log.warning("message %d cannot be compared with its new copy: %r", pk, exc)
                continue
            key = dedupe_key(parse_message(stored, received_at))
            if key in legacy[old_key]:
                session.execute(update(Message).where(Message.id == pk).values(dedupe_key=key))
                found[key] = pk
        return found


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
    reused = _reused_message_ids(session, groups)
    rows = []
    for copies in groups:
        first, parsed = copies[0], copies[0].parsed
        marks = [DUPLICATE_ID] if id(first) in reused else []
        marks += [POSTMASTER] if any(copy.raw.postmaster for copy in copies) else []
        marks += [] if any(_vouched(copy) for copy in copies) else [UNATTRIBUTED]
        rows.append(
            {
                **derived_fields(parsed, first.raw.received_at, first.raw.source),
                "sha256": first.sha256,
                "size": len(first.data),
                "received_at": first.raw.received_at,
                "envelope_from": first.envelope_from,
                "thread_id": threader.assign(parsed),
                "in_reply_to": parsed.in_reply_to,
                "list_id": _list_of(copies),
                "flags": sorted([*parsed.flags, *marks]),
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
            for (role, address), name in _recorded_roles(copies).items()
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


def _reused_message_ids(session: Session, groups: list[list[_Prepared]]) -> set[int]:
    """The first copies (by `id()`) of new messages whose Message-ID another message has:
    archived already, or earlier in this batch. Such a message is a different one under a
    reused Message-ID (same-message copies would have merged) and is flagged."""
    wanted = {copies[0].parsed.message_id for copies in groups}
    taken = set(session.scalars(select(Message.message_id).where(Message.message_id.in_(wanted))))
    reused = set()
    for copies in groups:
        message_id = copies[0].parsed.message_id
        if message_id in taken:
            reused.add(id(copies[0]))
        taken.add(message_id)
    return reused


def _list_of(copies: list[_Prepared]) -> str | None:
    """The list archive this message is filed into (None: no list's): the one the list
    engine, or an operator's `arsip import --list`, names for a copy whose own List-Id
    says the same. The engine's copy carries the List-Id it added; an imported message
    without that header stays out of the list, so `verify --deep` can hold every filed
    message to its bytes."""
    return next(
        (copy.raw.list_id for copy in copies if copy.raw.list_id == copy.parsed.list_id), None
    )


def _vouched(copy: _Prepared) -> bool:
    """Whether the copy's header addresses may be recorded: a trusted copy, or the list
    engine's (whose posting rules let it through)."""
    return copy.raw.trusted or copy.raw.list_id is not None


def _recorded_roles(copies: list[_Prepared]) -> dict[tuple[str, str], str]:
    """Every (role, address) the copies of one message may record, with display names.

    The one rule of what a copy may say about who a message concerns (the module's
    docstring says why): header From/To/Cc/Reply-To from a trusted copy or the list
    engine's; Bcc and the envelope only from trusted copies; nothing from any other.
    """
    roles: dict[tuple[str, str], str] = {}
    for copy in copies:
        if not _vouched(copy):
            continue
        parsed = copy.parsed
        for role in HEADER_ROLES:
            if role == "bcc" and not copy.raw.trusted:
                continue
            for address in getattr(parsed, "from_" if role == "from" else role):
                if address.email:
                    roles.setdefault((role, address.email), address.name)
        if not copy.raw.trusted:
            continue
        if copy.envelope_from:
            roles[(ENVELOPE_FROM, copy.envelope_from)] = ""
        for address in copy.envelope_to:
            roles[(ENVELOPE_TO, address)] = ""
    return roles


def _add_roles(session: Session, known: dict[int, list[_Prepared]]) -> set[int]:
    """Add what new copies of archived messages may record (`_recorded_roles`): the union
    of trusted copies' envelopes, and the list the list engine's copy files it into. A
    message that was unattributed is so no more once a vouched copy of it arrives.

    Returns the ids of the messages that changed (their index entry is stale).
    """
    if not known:
        return set()
    rows = session.execute(
        select(MessageAddress.message_pk, MessageAddress.role, MessageAddress.address).where(
            MessageAddress.message_pk.in_(list(known))
        )
    )
    have = {(pk, role, address) for pk, role, address in rows}
    rows = [
        {"message_pk": pk, "role": role, "address": address, "name": name}
        for pk, copies in known.items()
        for (role, address), name in _recorded_roles(copies).items()
        if (pk, role, address) not in have
    ]
    if rows:
        session.execute(insert(MessageAddress), rows)
    changed = {row["message_pk"] for row in rows}
    for pk, copies in known.items():
        list_id = _list_of(copies)
        if list_id is not None:
            filed = session.execute(
                update(Message)
                .where(Message.id == pk, Message.list_id.is_(None))
                .values(list_id=list_id)
            )
            if filed.rowcount:
                changed.add(pk)
    vouched = [pk for pk, copies in known.items() if any(_vouched(c) for c in copies)]
    for pk, flags in session.execute(
        select(Message.id, Message.flags).where(Message.id.in_(vouched))
    ):
        if UNATTRIBUTED in flags:
            kept = [flag for flag in flags if flag != UNATTRIBUTED]
            session.execute(update(Message).where(Message.id == pk).values(flags=kept))
            changed.add(pk)
    return changed
