"""The trusted timestamps' table, and the bytes each kind of token covers.

A token is the Time-Stamp Authority's signed statement that a sha256 (the imprint)
existed at a time (its gen time). What Arsip has stamped is one short ASCII line per
piece of evidence, which anyone can write again from an export and hand to `openssl ts
-verify -data`:

    arsip-stamp-v1 ledger-seal <day YYYY-MM-DD> <the day's seal digest>\\n
    arsip-stamp-v1 audit-head <seq> <the hash of audit entry seq>\\n

The seal digest already covers the day's message hashes and every seal before it, and an
audit entry's hash every entry before it; so a token on the newest seal or head vouches
for the whole chain behind it at the token's time.

A row is `waiting` from the moment there is something to stamp until a token is stored;
the scheduled job retries waiting rows with a growing pause (`archiver.timestamps.
stamping`). Rows are only added and, once, given their token: nothing deletes them.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, Session, mapped_column

from archiver.audit import AuditEntry
from archiver.ledger import DaySeal
from archiver.models import Base, BigId, UtcDateTime

STAMP_TAG = "arsip-stamp-v1"
LEDGER_SEAL = "ledger-seal"  # key: the sealed day
AUDIT_HEAD = "audit-head"  # key: the sequence number of the newest entry at the time
KINDS = (LEDGER_SEAL, AUDIT_HEAD)
WAITING, STAMPED = "waiting", "stamped"


class TimestampToken(Base):
    """One piece of evidence to be stamped, and once stamped its token (DER
    TimeStampResp, exactly as the TSA sent it)."""

    __tablename__ = "timestamp_tokens"
    __table_args__ = (UniqueConstraint("kind", "key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(32))
    imprint: Mapped[str] = mapped_column(String(64))  # hex sha256 of `stamped_record`
    status: Mapped[str] = mapped_column(String(8), index=True)
    token: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    gen_time: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    tsa: Mapped[str] = mapped_column(String(500), default="")  # URL without its login
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)

    @property
    def name(self) -> str:
        """How reports and file names call it: `ledger-seal-2026-03-02`, `audit-head-42`."""
        return f"{self.kind}-{self.key}"


def stamped_record(kind: str, key: str, digest: str) -> bytes:
    """The line a token of `kind` covers (see the module's docstring)."""
    return f"{STAMP_TAG} {kind} {key} {digest}\n".encode("ascii")


def imprint_of(data: bytes) -> str:
    """The hex sha256 the TSA is asked to sign for `data`."""
    return hashlib.sha256(data).hexdigest()


def current_record(session: Session, kind: str, key: str) -> bytes | None:
    """The line a token of `kind` and `key` covers, from the seal or audit entry as the
    database holds it now; None when that is gone."""
    digest: str | None = None
    if kind == LEDGER_SEAL:
        seal = session.get(DaySeal, key)
        digest = seal.digest if seal is not None else None
    elif kind == AUDIT_HEAD and key.isdigit():
        entry = session.get(AuditEntry, int(key))
        digest = entry.hash if entry is not None else None
    return None if digest is None else stamped_record(kind, key, digest)
