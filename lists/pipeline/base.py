"""What every pipeline handler gets: the list, the message it may change, and the means
to act (a database session, the archive, the DMARC lookup)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Protocol

from sqlalchemy.orm import Session

from archiver.archive import Archive
from archiver.contentcheck.verdict import Verdict
from lists.dmarc import DmarcLookup
from lists.models import MailingList


@dataclass
class Delivery:
    """One accepted post on its way through the pipeline."""

    mlist: MailingList
    message: EmailMessage
    sender: str  # the poster's address
    session: Session
    archive: Archive
    dmarc: DmarcLookup
    public_url: str
    received_at: datetime
    queue_id: str = ""
    verdict: Verdict | None = None  # the content checks' (None: off, or not known)
    notes: list[str] = field(default_factory=list)  # what the handlers did, for the log


class Handler(Protocol):
    """One step of the delivery pipeline."""

    name: str

    def process(self, delivery: Delivery) -> None:
        """Do this step to `delivery` (change the message, store, queue)."""
        ...
