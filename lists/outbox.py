"""Putting mail in the outbox: stored once, one row per recipient, committed with whatever
caused it (a post, a command), then delivered by `lists.delivery`."""

from __future__ import annotations

from collections.abc import Iterable
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import compat32

from sqlalchemy import Select, insert, literal
from sqlalchemy.orm import Session

from archiver.models import UtcDateTime
from lists.models import OutboxMessage, OutboxRecipient, utcnow


def enqueue(
    session: Session,
    data: bytes,
    sender: str,
    recipients: Iterable[str],
    kind: str,
    list_id: int | None = None,
    personalize: bool = False,
) -> int:
    """Store `data` for delivery to `recipients`; returns how many recipients."""
    unique = list(dict.fromkeys(address.lower() for address in recipients))
    if not unique:
        return 0
    message = _stored(session, data, sender, kind, list_id, personalize)
    now = utcnow()
    session.execute(
        insert(OutboxRecipient),
        [
            {
                "message_id": message.id,
                "address": address,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "last_reply": "",
            }
            for address in unique
        ],
    )
    return len(unique)


def enqueue_selected(
    session: Session,
    data: bytes,
    sender: str,
    addresses: Select[tuple[str]],
    kind: str,
    list_id: int | None = None,
    personalize: bool = False,
) -> int:
    """Like `enqueue`, for recipients a query selects (distinct addresses): one
    INSERT ... SELECT, so a list of ten thousand costs the database one statement and
    Python nothing per member."""
    message = _stored(session, data, sender, kind, list_id, personalize)
    rows = addresses.with_only_columns(
        literal(message.id),
        *addresses.selected_columns,
        literal("pending"),
        literal(0),
        literal(utcnow(), UtcDateTime()),
        literal(""),
    )
    result = session.execute(
        insert(OutboxRecipient).from_select(
            ["message_id", "address", "status", "attempts", "next_attempt_at", "last_reply"],
            rows,
        )
    )
    return result.rowcount or 0


def _stored(
    session: Session, data: bytes, sender: str, kind: str, list_id: int | None, personalize: bool
) -> OutboxMessage:
    """The outbox row of a message to send, with its id assigned for its recipients."""
    message = OutboxMessage(
        list_id=list_id,
        kind=kind,
        sender=sender,
        personalize=personalize,
        data=data,
        message_id=message_id_of(data),
    )
    session.add(message)
    session.flush()
    return message


def message_id_of(data: bytes) -> str:
    """The Message-ID in `data`'s headers, without <> and folding ("" when it has none):
    what a delivery report about the message names."""
    found = BytesHeaderParser(policy=compat32).parsebytes(data).get("Message-ID", "")
    return " ".join(str(found).split()).strip("<>")[:998]


def send_notice(session: Session, notice: EmailMessage, sender: str, list_id: int | None) -> None:
    """Queue a notice (a confirmation request, a moderation notice, a reply) to its To."""
    recipients = [address.addr_spec for address in notice["To"].addresses]
    enqueue(session, notice.as_bytes(), sender, recipients, "notice", list_id)
