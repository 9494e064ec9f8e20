"""The list engine's tables: lists, members, confirmations, held posts, bans, bounces, outbox.

They share the archive's declarative base, so one Alembic history covers the whole schema
(`migrations/` imports this module; `archiver` never does).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from archiver.models import Base, BigId, UtcDateTime


def utcnow() -> datetime:
    """Now, aware UTC (the default of every timestamp here)."""
    return datetime.now(UTC)


class Subscription(StrEnum):
    """Who may join: anyone who confirms, confirmed people an owner approves, or only
    people an owner adds."""

    OPEN = "open"
    MODERATE = "moderate"
    CLOSED = "closed"


class Posting(StrEnum):
    """Who may post without being held."""

    MEMBERS = "members"
    MODERATED = "moderated"
    OPEN = "open"
    ANNOUNCE = "announce"


class ArchivePolicy(StrEnum):
    """Whether posts are archived, and who may read the archive."""

    PUBLIC = "public"
    PRIVATE = "private"
    NONE = "none"


class Action(StrEnum):
    """What a posting rule decides."""

    ACCEPT = "accept"
    HOLD = "hold"
    REJECT = "reject"
    DISCARD = "discard"


class UncheckedPosts(StrEnum):
    """What a list does with a post a configured content check could not check."""

    HOLD = "hold"
    ACCEPT = "accept"


class Role(StrEnum):
    """A member's part in a list."""

    OWNER = "owner"
    MODERATOR = "moderator"
    MEMBER = "member"


class Delivery(StrEnum):
    """How a member receives posts."""

    REGULAR = "regular"
    PLAIN_DIGEST = "plain_digest"
    MIME_DIGEST = "mime_digest"
    NOMAIL = "nomail"


class MailingList(Base):
    """One list, known by its posting address `name@domain`."""

    __tablename__ = "mailing_lists"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    domain: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    subscription: Mapped[str] = mapped_column(String(16), default=Subscription.OPEN)
    posting: Mapped[str] = mapped_column(String(16), default=Posting.MEMBERS)
    archive: Mapped[str] = mapped_column(String(16), default=ArchivePolicy.PUBLIC)
    nonmember_action: Mapped[str] = mapped_column(String(16), default=Action.HOLD)
    subject_prefix: Mapped[str] = mapped_column(String(64), default="")
    reply_to: Mapped[str] = mapped_column(String(16), default="none")  # none|list|explicit
    reply_to_address: Mapped[str] = mapped_column(String(320), default="")
    dmarc: Mapped[str] = mapped_column(String(8), default="auto")  # auto|always|never
    personalize: Mapped[bool] = mapped_column(Boolean, default=True)
    footer: Mapped[str] = mapped_column(Text, default="")
    max_message_kb: Mapped[int] = mapped_column(Integer, default=1024)
    max_recipients: Mapped[int] = mapped_column(Integer, default=10)
    emergency: Mapped[bool] = mapped_column(Boolean, default=False)
    require_explicit_destination: Mapped[bool] = mapped_column(Boolean, default=True)
    # [{"header": "X-Spam-Flag", "pattern": "^yes", "action": "discard"}, ...]
    header_matches: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    bounce_threshold: Mapped[float] = mapped_column(Float, default=5.0)
    # Members-only posting believes the From header alone (the old, forgeable check);
    # off: a member's post needs the member's envelope sender or an aligned DKIM signature
    trust_header_from: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Content checks (when spamd/clamd are configured): hold a post at this spam score,
    # discard it at this one; what to do with a post no daemon could check: hold|accept
    spam_hold_score: Mapped[float] = mapped_column(Float, default=5.0)
    spam_discard_score: Mapped[float] = mapped_column(Float, default=15.0)
    unchecked_posts: Mapped[str] = mapped_column(String(8), default=UncheckedPosts.HOLD)
    digest_size_kb: Mapped[int] = mapped_column(Integer, default=30)
    digest_volume: Mapped[int] = mapped_column(Integer, default=1)
    digest_issue: Mapped[int] = mapped_column(Integer, default=1)
    digest_last_sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    # The language of the mail the list writes (`archiver.languages`); None: the default.
    language: Mapped[str | None] = mapped_column(String(8), default=None)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    members: Mapped[list[Member]] = relationship(
        back_populates="mailing_list", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (UniqueConstraint("name", "domain"),)

    @property
    def address(self) -> str:
        """The posting address."""
        return f"{self.name}@{self.domain}"

    def address_for(self, suffix: str) -> str:
        """One of the list's other addresses: `address_for("request")` is NAME-request@."""
        return f"{self.name}-{suffix}@{self.domain}"

    def page(self, public_url: str, name: str) -> str:
        """One of the list's pages on the web UI, for a link in mail: `page(url, "held")`."""
        return f"{public_url}/lists/{quote(self.address, safe='@')}/{name}"

    @property
    def list_id(self) -> str:
        """The RFC 2919 List-Id: the posting address with `.` for `@`."""
        return f"{self.name}.{self.domain}"

    @property
    def prefix(self) -> str:
        """The subject prefix, `[name]` unless one is set."""
        return self.subject_prefix or f"[{self.name}]"


class Member(Base):
    """An address in a list, in one role (an owner who also reads the list has two rows)."""

    __tablename__ = "list_members"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("mailing_lists.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(320))
    display_name: Mapped[str] = mapped_column(String(255), default="")
    role: Mapped[str] = mapped_column(String(16), default=Role.MEMBER)
    delivery: Mapped[str] = mapped_column(String(16), default=Delivery.REGULAR)
    moderated: Mapped[bool] = mapped_column(Boolean, default=False)
    bounce_score: Mapped[float] = mapped_column(Float, default=0.0)
    last_bounce_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    disabled_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    subscribed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    mailing_list: Mapped[MailingList] = relationship(back_populates="members")

    __table_args__ = (UniqueConstraint("list_id", "address", "role"),)


class Pending(Base):
    """A request waiting for confirmation by the address itself, or for an owner.

    The token is random, used once (the row is deleted when it is used) and expires.
    """

    __tablename__ = "list_pending"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("mailing_lists.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(320), index=True)
    display_name: Mapped[str] = mapped_column(String(255), default="")
    # subscribe | unsubscribe | approve (an owner's approval of a confirmed subscription)
    action: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


class HeldMessage(Base):
    """A post waiting for a moderator, with the reason it was held."""

    __tablename__ = "list_held_messages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("mailing_lists.id", ondelete="CASCADE"))
    sender: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[str] = mapped_column(Text, default="")
    reason: Mapped[str] = mapped_column(Text)  # in English, for the command line
    # The reason as `archiver.languages.Text.as_json` made it, to say it in the reader's
    # language; None for posts held before reasons were kept so (their English shows).
    reason_text: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    held_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # What the content checks said (`Verdict.as_dict`), for the archived copy if approved
    verdict: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class Ban(Base):
    """An address (or `^regex`) that may not post or subscribe; list-less bans are global."""

    __tablename__ = "list_bans"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    list_id: Mapped[int | None] = mapped_column(
        ForeignKey("mailing_lists.id", ondelete="CASCADE"), default=None
    )
    pattern: Mapped[str] = mapped_column(String(512))


class BounceRecord(Base):
    """One bounce of a list's mail to one address."""

    __tablename__ = "list_bounces"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("mailing_lists.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(320), index=True)
    permanent: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(16), default="")
    diagnostic: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class OutboxMessage(Base):
    """A message to deliver (a list post, a notice, a digest), stored once for all of its
    recipients; the sender personalises or batches it at delivery time."""

    __tablename__ = "outbox_messages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    list_id: Mapped[int | None] = mapped_column(
        ForeignKey("mailing_lists.id", ondelete="CASCADE"), default=None
    )
    kind: Mapped[str] = mapped_column(String(16))  # post | notice | digest
    sender: Mapped[str] = mapped_column(String(320))  # envelope sender (VERP'd when personal)
    # Its Message-ID without <>: a delivery report names it (lists/bounces.py)
    message_id: Mapped[str] = mapped_column(String(998), default="", server_default="", index=True)
    personalize: Mapped[bool] = mapped_column(Boolean, default=False)
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class OutboxRecipient(Base):
    """One recipient of an outbox message: pending until the smarthost takes it.

    Rows are committed before delivery starts and marked sent after the smarthost's
    `250`, so a crash or an outage delays mail but never drops it.
    """

    __tablename__ = "outbox_recipients"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("outbox_messages.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(8), default="pending")  # pending|sent|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_reply: Mapped[str] = mapped_column(Text, default="")
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)

    __table_args__ = (Index("ix_outbox_recipients_due", "status", "next_attempt_at"),)


class DigestEntry(Base):
    """A post collected for the list's next digest."""

    __tablename__ = "list_digest_entries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("mailing_lists.id", ondelete="CASCADE"))
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    size: Mapped[int] = mapped_column(BigInteger)
    added_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # The post's Message-ID as the archive gives it (`archiver.deleted.message_id_of`), so
    # a deletion reads only the posts that may be its copies; None for posts kept before.
    message_id: Mapped[str | None] = mapped_column(Text)
