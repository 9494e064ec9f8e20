"""The table of erasure requests: the one record an erasure keeps of its data subject.

The address stays after its mail is gone: it is what a later pass needs to erase the
mail a hold or a retention period still keeps, and what shows, when a supervisory
authority asks, that the request was made and carried out (Art. 5(2), accountability).
Nothing else of the person is kept here: no names, no subjects, no Message-IDs.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from archiver.models import Base, BigId, UtcDateTime, utcnow

OPEN = "open"  # some of the address's mail is still kept (held, retained, being indexed)
DONE = "done"  # nothing the request covers is left


class ErasureRequest(Base):
    """A request to erase the mail of one address that was archived by `requested_at`.

    Mail archived later is not covered: journaling goes on capturing the person's new
    mail, as the law that makes an archive keep mail expects, and a new request covers it.
    The counts say what the last run found: `erased` adds up over every run.
    """

    __tablename__ = "erasure_requests"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    address: Mapped[str] = mapped_column(String(320), index=True)
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    requested_by: Mapped[str] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(8), default=OPEN, index=True)
    erased: Mapped[int] = mapped_column(Integer, default=0)
    held: Mapped[int] = mapped_column(Integer, default=0)
    retained: Mapped[int] = mapped_column(Integer, default=0)
    waiting: Mapped[int] = mapped_column(Integer, default=0)
    last_run_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
