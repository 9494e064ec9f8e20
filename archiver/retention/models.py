"""The tables of retention: policies, holds, the sweep's state and its pending blob removals."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from archiver.models import Base, BigId, UtcDateTime, utcnow


class RetentionPolicy(Base):
    """Keep the messages a scope matches for a period (`7y`, `90d`) after their date.

    `scope` is a search query (`list:dev@lists.example.com`, `from:example.com`, any words);
    None means every message. A message matched by several policies is kept for the
    longest of them; a message no policy matches is kept forever.
    """

    __tablename__ = "retention_policies"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    scope: Mapped[str | None] = mapped_column(Text)
    keep: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(320))


class LegalHold(Base):
    """Messages no sweep may delete while the hold is active, mail arriving later included.

    A message is covered when it matches every criterion given: the query, one of the
    custodians' addresses (in any role, envelope included), and the date range.
    """

    __tablename__ = "legal_holds"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    reason: Mapped[str] = mapped_column(Text)
    query: Mapped[str | None] = mapped_column(Text)
    custodians: Mapped[list[str]] = mapped_column(JSON)
    since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(320))
    released_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    released_by: Mapped[str | None] = mapped_column(String(320))


class SweepState(Base):
    """The single row saying whether sweeps are paused, and how the last one went."""

    __tablename__ = "retention_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    paused_by: Mapped[str | None] = mapped_column(String(320))
    last_started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_deleted: Mapped[int] = mapped_column(Integer, default=0)


class BlobRemoval(Base):
    """A blob file to remove once the transaction that deleted its last message commits.

    Files cannot roll back with the database, so the deletion is written down in the same
    transaction and carried out afterwards; a sweep killed in between finds it next time.
    """

    __tablename__ = "blob_removals"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    queued_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
