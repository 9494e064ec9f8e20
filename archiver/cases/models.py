"""The tables of cases: the case itself, its reviewers, and the holds placed for it."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Date, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from archiver.models import Base, BigId, UtcDateTime, utcnow

OPEN = "open"
CLOSED = "closed"


class Case(Base):
    """A legal matter: the mail it concerns, and the people reviewing that mail.

    A message is in the case when it matches every criterion given: one of the custodians'
    addresses (sender or recipient, envelope included), the date range (inclusive days of
    the message's date), and any one of the queries. A case names custodians, queries or
    both: one with neither would be the whole archive.
    """

    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    custodians: Mapped[list[str]] = mapped_column(JSON)
    queries: Mapped[list[str]] = mapped_column(JSON)
    since: Mapped[date | None] = mapped_column(Date)
    until: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default=OPEN)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(320))
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    closed_by: Mapped[str | None] = mapped_column(String(320))

    @property
    def is_open(self) -> bool:
        return self.status == OPEN


class CaseReviewer(Base):
    """An account that may read a case's mail (and, inside the case, nothing else)."""

    __tablename__ = "case_reviewers"

    case_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    added_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    added_by: Mapped[str] = mapped_column(String(320))


class CaseHold(Base):
    """A legal hold placed for a case (`archiver.retention`'s own hold, linked here so the
    retention code stays unaware of cases)."""

    __tablename__ = "case_holds"

    hold_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("legal_holds.id", ondelete="CASCADE"), primary_key=True
    )
    case_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("cases.id", ondelete="CASCADE"), index=True
    )
