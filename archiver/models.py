"""The archive's tables, as typed SQLAlchemy models.

The schema changes only through Alembic (`migrations/`); a test compares these models with
the migrations so the two cannot drift apart.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for a big archive.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """Now, aware UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base with stable constraint names, which Alembic needs to alter them."""

    metadata = MetaData(naming_convention=NAMING)


class UtcDateTime(TypeDecorator[datetime]):
    """A point in time, stored as naive UTC and handed back timezone-aware.

    SQLite has no time zones; storing naive UTC on both databases keeps comparisons and
    indexes identical, and the aware values keep Python code from mixing local time in.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class SpoolEntry(Base):
    """One accepted SMTP/LMTP transaction, raw bytes included, waiting to be archived.

    The row, bytes and all, is committed before the client hears 250 and deleted in the
    same transaction that archives the message, so a crash at any point leaves either the
    row (and the work is redone) or the archived message, never neither.
    """

    __tablename__ = "spool"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    queue_id: Mapped[str] = mapped_column(String(32), unique=True)
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    envelope_from: Mapped[str] = mapped_column(Text)
    recipients: Mapped[list[str]] = mapped_column(JSON)
    protocol: Mapped[str] = mapped_column(String(8))
    peer: Mapped[str] = mapped_column(String(80))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    last_error: Mapped[str | None] = mapped_column(Text)
    # 0 for mail to a list (people wait for it), 1 for journal copies; workers take 0 first
    priority: Mapped[int] = mapped_column(SmallInteger, default=1)
    # Whether the client was a trusted journal source (ARSIP_JOURNAL_CLIENTS); None for
    # rows spooled before migration 0013, whose peer address decides instead
    trusted: Mapped[bool | None] = mapped_column(Boolean)

    __table_args__ = (Index("ix_spool_priority_id", "priority", "id"),)


class Blob(Base):
    """A stored raw message, addressed by the sha256 of its uncompressed bytes."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size_raw: Mapped[int] = mapped_column(BigInteger)
    size_stored: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Message(Base):
    """One archived message. Journal copies of it share this row (see `dedupe_key`).

    Its text is not kept here: the raw blob is the one copy, and `archiver.texts` derives
    the body and attachment text from it for search, snippets and pages.
    """

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # sha256 over Message-ID and body: copies that differ only in trace headers are one message.
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    message_id: Mapped[str] = mapped_column(Text, index=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    subject: Mapped[str] = mapped_column(Text)
    # The subject without Re:/Fwd:/[list] prefixes, for the subject-threading fallback.
    subject_key: Mapped[str] = mapped_column(String(255), index=True)
    from_address: Mapped[str] = mapped_column(Text, index=True)
    from_name: Mapped[str] = mapped_column(Text)
    date: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # What retention ages the message by (`archiver.retention.clock`), never the sender's
    # Date: alone; indexed with the id for the sweep's keyset paging.
    retention_date: Mapped[datetime] = mapped_column(UtcDateTime)
    envelope_from: Mapped[str] = mapped_column(Text)
    thread_id: Mapped[str] = mapped_column(String(32), index=True)
    in_reply_to: Mapped[str | None] = mapped_column(Text)
    list_id: Mapped[str | None] = mapped_column(Text, index=True)
    flags: Mapped[list[str]] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(16))

    __table_args__ = (Index("ix_messages_retention_date_id", "retention_date", "id"),)

    addresses: Mapped[list[MessageAddress]] = relationship(
        back_populates="message", cascade="all, delete-orphan", passive_deletes=True
    )
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="message",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Attachment.position",
    )
    folders: Mapped[list[MessageFolder]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="MessageFolder.folder"
    )


class MessageAddress(Base):
    """An address a message concerns, by role: header roles and the envelope.

    Access control ("a user sees mail they sent or received, envelope included") is one
    indexed look-up in this table.

    It has the most rows of any table (a message with a long Cc list has dozens), so a
    row is its key and nothing more: no surrogate id, and on SQLite no rowid, the table
    itself being the (message, role, address) index a unique constraint would copy.
    """

    __tablename__ = "message_addresses"
    __table_args__ = (
        Index("ix_message_addresses_address_role", "address", "role"),
        {"sqlite_with_rowid": False},
    )

    message_pk: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(16), primary_key=True)
    address: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text, default="")

    message: Mapped[Message] = relationship(back_populates="addresses")


class Attachment(Base):
    """A non-body MIME part of an archived message; its bytes, and its text, stay inside the
    raw blob (`archiver.texts` extracts the text when it is needed)."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_pk: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    filename: Mapped[str | None] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    # Whether text could be read from it (a text part, a readable PDF), for `arsip show`.
    has_text: Mapped[bool] = mapped_column(Boolean, default=False)

    message: Mapped[Message] = relationship(back_populates="attachments")


class MessageFolder(Base):
    """A folder a message was imported from: a PST folder (`Inbox/Projects`) or an IMAP
    mailbox (`INBOX/Projects`), searchable with `folder:`.

    A message is stored once, so the same message imported from two folders (or from a
    PST and from an IMAP account) has one row per folder: importing adds folders, never
    takes one away.
    """

    __tablename__ = "message_folders"

    message_pk: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    folder: Mapped[str] = mapped_column(Text, primary_key=True)


class ImportCursor(Base):
    """How far `arsip import` got in one IMAP mailbox, so that a rerun fetches only the
    mail that came after: the mailbox's UIDVALIDITY and the highest UID archived.

    `source` is the mailbox's URL without any password (`imaps://alice@host:993/INBOX`).
    A new UIDVALIDITY means the server renumbered the mailbox: the import starts over
    (deduplication keeps that from adding anything twice).
    """

    __tablename__ = "import_cursors"

    source: Mapped[str] = mapped_column(Text, primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ContentCheck(Base):
    """What spamd and clamd said about an archived message, when they were configured.

    The message is kept whatever they said (a compliance archive keeps everything); the
    verdict makes it findable (`is:spam`, `has:virus`) and shows on its page.
    """

    __tablename__ = "content_checks"

    message_pk: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    checked_at: Mapped[datetime] = mapped_column(UtcDateTime)
    spam_score: Mapped[float | None] = mapped_column(Float)
    spam_threshold: Mapped[float | None] = mapped_column(Float)
    spam_rules: Mapped[str] = mapped_column(Text, default="")  # comma-separated, as spamd says
    spam: Mapped[bool] = mapped_column(Boolean, default=False, index=True)  # spamd's verdict
    virus: Mapped[str | None] = mapped_column(String(255), index=True)  # the signature found
    unchecked: Mapped[str] = mapped_column(String(64), default="")  # daemons that failed


class ThreadRef(Base):
    """Which thread a Message-ID belongs to, whether or not that message is archived.

    Keeping referenced-but-missing ids ("ghosts", in JWZ's terms) lets two replies to a
    message we never saw still land in one thread, in any arrival order.
    """

    __tablename__ = "thread_refs"

    message_id: Mapped[str] = mapped_column(Text, primary_key=True)
    thread_id: Mapped[str] = mapped_column(String(32), index=True)


class IndexQueueEntry(Base):
    """A message whose search entry must be (re)written or removed."""

    __tablename__ = "index_queue"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_pk: Mapped[int] = mapped_column(BigInteger, index=True)
    action: Mapped[str] = mapped_column(String(8))
    enqueued_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ThrottleEvent(Base):
    """One counted attempt (a failed login, a mailed link) for a rate limit.

    Kept in the database so every web process, and every gunicorn worker, shares one
    count per client or address; rows older than their window are pruned as new ones come.
    """

    __tablename__ = "throttle_events"
    __table_args__ = (Index("ix_throttle_events_scope_key_at", "scope", "key", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(320))
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
