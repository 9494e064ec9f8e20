"""Data-subject requests: the messages an address appears in, in any role.

"Give me every message about me" is answered from the address rows every message has:
sender, To, Cc, Bcc, Reply-To and the envelope of journal copies alike.
"""

from __future__ import annotations

import re

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from archiver.models import Message, MessageAddress
from archiver.production.errors import ProductionError

_ADDRESS = re.compile(r"[^@\s<>]+@[^@\s<>]+")


def checked_address(text: str) -> str:
    """`text` as addresses are stored (lower case, without angle brackets); a
    ProductionError for anything that is not one address."""
    address = text.strip().removeprefix("<").removesuffix(">").strip().lower()
    if not _ADDRESS.fullmatch(address):
        raise ProductionError(f"{text!r} is not an address like ann@example.com")
    return address


def subject_series(address: str) -> str:
    """The series whose control numbers run on across the requests of one address."""
    return f"subject:{address}"


def subject_messages(session: Session, address: str) -> list[int]:
    """The messages `address` appears in, in any role, oldest first."""
    named = exists().where(
        MessageAddress.message_pk == Message.id, MessageAddress.address == address
    )
    return list(session.scalars(select(Message.id).where(named).order_by(Message.date, Message.id)))
