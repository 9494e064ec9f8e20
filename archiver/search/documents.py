"""What the search index knows of a message, built from the archive's rows and blobs.

Both backends index the same `SearchDocument`, so they can only differ in how they match,
never in what they know. Addresses are expanded here once: a whole address, its local part
and its domains, so that `from:alice`, `from:example.com` and `from:alice@example.com`
all match. The content checks' verdict comes along as two flags (`is:spam`, `has:virus`):
it is written with the message and never changes, so an indexed flag cannot go stale.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver.access import granting_addresses
from archiver.folders import folders_of
from archiver.models import Attachment, ContentCheck, Message, MessageAddress
from archiver.parse import MessageText
from archiver.search.query import MARKS
from archiver.store import DirectoryBlobStore
from archiver.texts import message_texts

TO_ROLES = ("to", "bcc", "envelope_to")


@dataclass
class SearchDocument:
    """The searchable view of one archived message."""

    message_pk: int
    message_id: str
    subject: str
    body: str
    attachment_text: str
    filenames: list[str]
    from_addresses: list[str]
    to_addresses: list[str]
    cc_addresses: list[str]
    names: list[str]
    # Whose mail this is (`archiver.access`): the index's viewer filter, nothing else.
    participants: set[str] = field(default_factory=set)
    # Every address it names, Reply-To included: searchable as people, grants nothing.
    addresses: set[str] = field(default_factory=set)
    list_id: str | None = None
    date: datetime | None = None
    size: int = 0
    has_attachment: bool = False
    is_spam: bool = False  # spamd's own verdict
    has_virus: bool = False  # clamd found a signature
    marks: list[str] = field(default_factory=list)  # the flags `is:` finds (query.MARKS)
    folders: list[str] = field(default_factory=list)  # where imports found it (`folder:`)

    @property
    def sender_domain(self) -> str:
        """The first sender's domain, for the facet."""
        return self.from_addresses[0].rpartition("@")[2] if self.from_addresses else ""


def address_tokens(addresses: Iterable[str]) -> list[str]:
    """Whole addresses, local parts, domains and parent domains, lower-case, unique."""
    tokens: dict[str, None] = {}
    for address in addresses:
        address = address.lower()
        local, at, domain = address.rpartition("@")
        tokens[address] = None
        if at:
            tokens[local] = None
            labels = domain.split(".")
            for start in range(len(labels) - 1):
                tokens[".".join(labels[start:])] = None
    return list(tokens)


def load_documents(
    session: Session, store: DirectoryBlobStore, message_pks: Iterable[int]
) -> list[SearchDocument]:
    """Documents for the given messages (missing ones are simply absent from the result).

    The words come from each message's raw blob in `store` (the database keeps no copy).
    """
    pks = sorted(set(message_pks))
    if not pks:
        return []
    messages = session.scalars(select(Message).where(Message.id.in_(pks))).all()
    addresses = address_rows(session, pks)
    filenames: dict[int, list[str | None]] = defaultdict(list)
    for pk, filename in session.execute(
        select(Attachment.message_pk, Attachment.filename)
        .where(Attachment.message_pk.in_(pks))
        .order_by(Attachment.message_pk, Attachment.position)
    ):
        filenames[pk].append(filename)
    flagged = {
        pk: (spam, virus is not None)
        for pk, spam, virus in session.execute(
            select(ContentCheck.message_pk, ContentCheck.spam, ContentCheck.virus).where(
                ContentCheck.message_pk.in_(pks),
                ContentCheck.spam.is_(True) | ContentCheck.virus.is_not(None),
            )
        )
    }
    texts = message_texts(store, [m.sha256 for m in messages])
    folders = folders_of(session, pks)
    documents = [
        _document(
            m, texts[m.sha256], addresses[m.id], filenames[m.id], flagged.get(m.id, (False, False))
        )
        for m in messages
    ]
    for document in documents:
        document.folders = folders.get(document.message_pk, [])
    return documents


def _document(
    message: Message,
    text: MessageText,
    addresses: list[tuple[str, str, str]],
    filenames: list[str | None],
    flags: tuple[bool, bool],
) -> SearchDocument:
    def role(*names: str) -> list[str]:
        return [address for r, address, _name in addresses if r in names]

    return SearchDocument(
        message_pk=message.id,
        message_id=message.message_id.lower(),
        subject=message.subject,
        body=text.body,
        attachment_text="\n".join(part for part in text.attachments if part),
        filenames=[name for name in filenames if name],
        from_addresses=role("from"),
        to_addresses=role(*TO_ROLES),
        cc_addresses=role("cc"),
        names=sorted({name for _r, _a, name in addresses if name}),
        participants=granting_addresses((r, address) for r, address, _n in addresses),
        addresses={address for _r, address, _n in addresses},
        list_id=message.list_id,
        date=message.date,
        size=message.size,
        has_attachment=bool(filenames),
        is_spam=flags[0],
        has_virus=flags[1],
        marks=sorted(MARKS.intersection(message.flags or ())),
    )


def address_rows(session: Session, pks: list[int]) -> dict[int, list[tuple[str, str, str]]]:
    """Each message's (role, address, name) rows, for the messages `pks` names."""
    rows: dict[int, list[tuple[str, str, str]]] = defaultdict(list)
    for pk, role, address, name in session.execute(
        select(
            MessageAddress.message_pk,
            MessageAddress.role,
            MessageAddress.address,
            MessageAddress.name,
        ).where(MessageAddress.message_pk.in_(pks))
    ):
        rows[pk].append((role, address, name))
    return rows
