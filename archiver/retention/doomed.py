"""The messages a retention dry run would delete, a page at a time, for people to read.

The dry run (`Sweeper.run(dry_run=True, collect=True)`) decides which messages would go,
oldest first by the date retention counts from; this module only describes a page of
them (date, sender, subject, list), so what is listed is exactly what would be deleted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver.models import Message

PAGE_SIZE = 50


@dataclass(frozen=True)
class DoomedMessage:
    """One message a sweep would delete, as a listing shows it."""

    message_id: str
    date: datetime
    sender: str
    subject: str
    list_id: str | None

    def as_json(self) -> dict[str, object]:
        return {**asdict(self), "date": self.date.isoformat()}


@dataclass(frozen=True)
class DoomedPage:
    """Page `number` (from 1) of `total` doomed messages; `first` is the position of its
    first message (from 1)."""

    messages: list[DoomedMessage]
    number: int
    first: int
    total: int
    size: int

    @property
    def last_page(self) -> int:
        return _page_count(self.total, self.size)

    @property
    def last(self) -> int:
        """The position of its last message (from 1); `first - 1` when empty."""
        return self.first + len(self.messages) - 1


def doomed_page(
    session: Session, doomed: Sequence[int], number: int, size: int = PAGE_SIZE
) -> DoomedPage:
    """Page `number` of the messages `doomed` names in its order (past the end: the last
    page); a message deleted since the dry run is left out."""
    number = min(max(1, number), _page_count(len(doomed), size))
    pks = list(doomed[(number - 1) * size : number * size])
    found = {m.id: m for m in session.scalars(select(Message).where(Message.id.in_(pks)))}
    listed = [
        DoomedMessage(m.message_id, m.date, m.from_address, m.subject, m.list_id)
        for m in (found.get(pk) for pk in pks)
        if m is not None
    ]
    return DoomedPage(listed, number, (number - 1) * size + 1, len(doomed), size)


def _page_count(total: int, size: int) -> int:
    """How many pages `total` messages fill; an empty listing is one empty page."""
    return max(1, -(-total // size))
