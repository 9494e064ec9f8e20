"""Data-subject access requests: the messages about an address (`archiver.subjects`, the
same rule erasure follows), as a production series of their own."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver.accounts import BadEmail, normalise_email
from archiver.models import Message
from archiver.production.errors import ProductionError
from archiver.subjects import concerning


def checked_address(text: str) -> str:
    """`text` as addresses are stored (lower case, without angle brackets); a
    ProductionError for anything that is not one address."""
    try:
        return normalise_email(text.strip().removeprefix("<").removesuffix(">"))
    except BadEmail as exc:
        raise ProductionError(f"{text!r} is not an address like ann@example.com") from exc


def subject_series(address: str) -> str:
    """The series whose control numbers run on across the requests of one address."""
    return f"subject:{address}"


def subject_messages(session: Session, address: str) -> list[int]:
    """The messages about `address`, oldest first."""
    query = select(Message.id).where(concerning(address)).order_by(Message.date, Message.id)
    return list(session.scalars(query))
