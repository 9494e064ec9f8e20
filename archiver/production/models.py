"""The tables of productions: each series' next control number, and each production run.

Control numbers are handed out by the database, never worked out from the files: a
number reserved for a production that was later abandoned is never given again, so a gap
in a series is explained by its productions (and the audit trail), never by a reuse.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from archiver.models import Base, BigId, UtcDateTime, utcnow

# What a production is doing: writing its files, moving them into place, done, or given
# up for another run on the same folder (its numbers stay spent)
RUNNING, FINISHING, COMPLETE, ABANDONED = "running", "finishing", "complete", "abandoned"


class ProductionSeries(Base):
    """The productions whose control numbers run on from one to the next: a case's, or
    the data-subject requests of one address (`subject:ADDRESS`)."""

    __tablename__ = "production_series"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    prefix: Mapped[str] = mapped_column(String(32))
    next_number: Mapped[int] = mapped_column(BigInteger, default=1)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Production(Base):
    """One production of a series: its reserved numbers, where it was written, and how far
    it got. `plan_sha256` identifies what it produces, so that running the same command on
    the same folder again resumes it, and anything else starts afresh."""

    __tablename__ = "productions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    series: Mapped[str] = mapped_column(ForeignKey("production_series.key"), index=True)
    prefix: Mapped[str] = mapped_column(String(32))
    first_number: Mapped[int] = mapped_column(BigInteger)
    last_number: Mapped[int] = mapped_column(BigInteger)
    documents: Mapped[int] = mapped_column(Integer)  # numbered: messages and attachments
    files: Mapped[int] = mapped_column(Integer, default=0)
    output: Mapped[str] = mapped_column(Text, index=True)
    format: Mapped[str] = mapped_column(String(16))
    dedupe: Mapped[str] = mapped_column(String(16))
    plan_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=RUNNING)
    manifest_sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(320))
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
