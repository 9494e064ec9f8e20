"""Which archived messages a viewer may see, as a condition inside the SQL query.

Invariant 6 puts the access check below the UI: every page that fetches a message asks
through here, and the check is part of the statement the database runs, so a message the
viewer may not see is never loaded at all (and cannot leak through a forgotten filter).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, exists, false, or_, select, true
from sqlalchemy.orm import Session, selectinload

from archiver.archive import ENVELOPE_FROM, ENVELOPE_TO
from archiver.models import Message, MessageAddress
from archiver.search.viewer import Viewer

# The roles that make a message someone's own mail: they sent it or it was addressed or
# delivered to them. Reply-To is left out: naming someone there does not send them the mail.
OWN_ROLES = ("from", "to", "cc", "bcc", ENVELOPE_FROM, ENVELOPE_TO)


def visible_messages(viewer: Viewer) -> ColumnElement[bool]:
    """A condition on `Message` that holds for the messages `viewer` may see.

    Use it in `select(Message).where(visible_messages(viewer))`; it becomes an EXISTS over
    the indexed (address, role) pairs and an IN over the readable list ids.
    """
    if viewer.sees_all:
        return true()
    clauses: list[ColumnElement[bool]] = []
    if viewer.addresses:
        clauses.append(
            exists().where(
                MessageAddress.message_pk == Message.id,
                MessageAddress.address.in_(sorted(viewer.addresses)),
                MessageAddress.role.in_(OWN_ROLES),
            )
        )
    if viewer.readable_lists:
        clauses.append(Message.list_id.in_(sorted(viewer.readable_lists)))
    if not clauses:
        return false()
    return or_(*clauses)


def find_message(session: Session, viewer: Viewer, message_id: str) -> Message | None:
    """The first archived message with this Message-ID that `viewer` may see.

    None both when there is no such message and when it is not the viewer's to see, so the
    caller answers the same way and nobody learns that a private message exists.
    """
    wanted = message_id.strip().removeprefix("<").removesuffix(">")
    if not wanted:
        return None
    return session.scalars(
        select(Message)
        .where(Message.message_id == wanted, visible_messages(viewer))
        .options(selectinload(Message.addresses), selectinload(Message.attachments))
        .order_by(Message.id)
        .limit(1)
    ).first()


def thread_messages(session: Session, viewer: Viewer, thread_id: str) -> list[Message]:
    """The messages of a thread that `viewer` may see, oldest first."""
    return list(
        session.scalars(
            select(Message)
            .where(Message.thread_id == thread_id, visible_messages(viewer))
            .options(selectinload(Message.addresses))
            .order_by(Message.date, Message.id)
        )
    )
