"""Which archived messages a viewer may see: the one rule, for every reader.

Invariant 6 puts the access check below the UI. The rule has two halves kept side by side
here so they cannot drift apart: `GRANTING_ROLES` says which address rows make a message
someone's own mail, and `visible_messages` turns a viewer into a condition inside the SQL
query, so a message the viewer may not see is never loaded at all. The search index stores
`granting_addresses` of each message and filters by them, so search, totals, facets and
exports answer exactly what the pages answer.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import ColumnElement, exists, false, or_, select, true
from sqlalchemy.orm import Session, selectinload

from archiver.archive import ENVELOPE_FROM, ENVELOPE_TO
from archiver.id_sets import in_ids
from archiver.models import Message, MessageAddress
from archiver.search.viewer import Viewer

# The roles that make a message someone's own mail: they sent it or it was addressed or
# delivered to them. Reply-To is left out: naming someone there does not send them the mail.
# Envelope and Bcc rows count as they are stored; the intake records them only for copies
# from trusted journal sources, so an outsider's envelope grants nothing.
GRANTING_ROLES = ("from", "to", "cc", "bcc", ENVELOPE_FROM, ENVELOPE_TO)


def granting_addresses(rows: Iterable[tuple[str, str]]) -> set[str]:
    """The addresses among (role, address) rows whose owners may read the message."""
    return {address for role, address in rows if role in GRANTING_ROLES}


def visible_messages(viewer: Viewer) -> ColumnElement[bool]:
    """A condition on `Message` that holds for the messages `viewer` may see.

    Use it in `select(Message).where(visible_messages(viewer))`; it becomes an EXISTS over
    the indexed (address, role) pairs and an IN over the readable list ids. A viewer
    limited to a scope sees the scope's members and nothing else.
    """
    if viewer.scope is not None:
        return in_ids(Message.id, viewer.scope.members)
    if viewer.sees_all:
        return true()
    clauses: list[ColumnElement[bool]] = []
    if viewer.addresses:
        clauses.append(
            exists().where(
                MessageAddress.message_pk == Message.id,
                MessageAddress.address.in_(sorted(viewer.addresses)),
                MessageAddress.role.in_(GRANTING_ROLES),
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
