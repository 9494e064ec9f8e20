"""What every pipeline handler gets: the list, the message it may change, what DNS said
of its From domain, and the means to act (a database session, the archive)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from functools import cached_property
from typing import Protocol

from sqlalchemy.orm import Session

from archiver.archive import Archive
from archiver.contentcheck.verdict import Verdict
from lists.models import MailingList


@dataclass
class Delivery:
    """One accepted post on its way through the pipeline."""

    mlist: MailingList
    message: EmailMessage
    sender: str  # the poster's address
    session: Session
    archive: Archive
    public_url: str
    received_at: datetime
    from_policy: str | None = None  # the From domain's DMARC policy (None: none known)
    queue_id: str = ""
    verdict: Verdict | None = None  # the content checks' (None: off, or not known)
    notes: list[str] = field(default_factory=list)  # what the handlers did, for the log

    @cached_property
    def data(self) -> bytes:
        """The message as the archive, the digest and every member get it, serialised
        once, when the first handler that stores it asks: the handlers that change the
        message all come before those that store it (`PIPELINE`)."""
        return self.message.as_bytes()


class Handler(Protocol):
    """One step of the delivery pipeline."""

    name: str

    def process(self, delivery: Delivery) -> None:
        """Do this step to `delivery` (change the message, store, queue)."""
        ...
