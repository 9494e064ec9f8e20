"""Where a reader goes from a message: the messages before and after it in its thread, and
up (`rel="up"`, the `u` key) to the results they came from, the thread, or the list's month.

The thread's order is its reading order, the tree the thread page shows, so `j` on a
message page opens the message the thread page shows next. Only the messages the viewer
may see take part (`visible_messages`), so a neighbour is never a message they cannot open.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar
from urllib.parse import quote

from flask_babel import format_date, gettext
from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver.access import visible_messages
from archiver.models import Message
from archiver.search.viewer import Viewer
from lists.models import MailingList
from web.case_context import in_case
from web.list_archives import month_url, readable
from web.navigation import with_return


class Threaded(Protocol):
    """What ordering a thread needs of a message (a `Message`, or a row of its columns)."""

    @property
    def id(self) -> int: ...
    @property
    def message_id(self) -> str: ...
    @property
    def in_reply_to(self) -> str | None: ...


T = TypeVar("T", bound=Threaded)


def thread_tree(messages: Sequence[T]) -> list[tuple[int, T]]:
    """The messages in reading order with their depth below the message they answer.

    A message whose parent is not among `messages` (not archived, or not the viewer's to
    see) starts at the top level; siblings keep the order they were given in (by date).
    """
    by_id = {m.message_id: m for m in messages}
    children: dict[int, list[T]] = {}
    roots: list[T] = []
    for message in messages:
        parent = by_id.get(message.in_reply_to or "")
        if parent is None or parent is message:
            roots.append(message)
        else:
            children.setdefault(parent.id, []).append(message)
    ordered: list[tuple[int, T]] = []
    placed: set[int] = set()
    pending = [(0, root) for root in reversed(roots)]
    while True:
        while pending:
            depth, message = pending.pop()
            if message.id in placed:
                continue
            placed.add(message.id)
            ordered.append((depth, message))
            pending.extend((depth + 1, c) for c in reversed(children.get(message.id, [])))
        # Replies that form a loop among themselves reach no root: show them at the top.
        rest = [m for m in messages if m.id not in placed]
        if not rest:
            return ordered
        pending.append((0, rest[0]))


@dataclass(frozen=True)
class Neighbours:
    """A message's place in its thread, as far as the viewer sees it."""

    previous: str | None  # Message-IDs
    next: str | None
    position: int  # from 1
    size: int


def neighbours(db: Session, viewer: Viewer, message: Message) -> Neighbours:
    """The messages before and after `message` in its thread's reading order."""
    rows = db.execute(
        select(Message.id, Message.message_id, Message.in_reply_to)
        .where(Message.thread_id == message.thread_id, visible_messages(viewer))
        .order_by(Message.date, Message.id)
    ).all()
    ordered = [row for _, row in thread_tree(rows)]
    index = next((i for i, row in enumerate(ordered) if row.id == message.id), None)
    if index is None:  # not indexed in its thread (cannot happen, but never fail a page)
        return Neighbours(None, None, 1, 1)
    before = ordered[index - 1].message_id if index > 0 else None
    after = ordered[index + 1].message_id if index + 1 < len(ordered) else None
    return Neighbours(before, after, index + 1, len(ordered))


def list_of(db: Session, list_id: str | None) -> MailingList | None:
    """The list of ours a List-Id (`name.domain`) names, if any."""
    if not list_id or "." not in list_id:
        return None
    name, domain = list_id.split(".", 1)
    return db.scalar(
        select(MailingList).where(MailingList.name == name, MailingList.domain == domain)
    )


@dataclass(frozen=True)
class Link:
    """A link with its words."""

    href: str
    label: str


def month_link(mlist: MailingList | None, when: datetime) -> Link | None:
    """The list's month of `when`, if the list is ours and this viewer may read it (a
    private list's member gets the link; someone who only got the post as mail does not)."""
    if mlist is None or not readable(mlist):
        return None
    href = month_url(mlist.address, when)
    label = gettext(
        "%(list)s, %(month)s",
        list=mlist.display_name or mlist.name,
        month=format_date(when, "MMMM yyyy"),
    )
    return Link(href, label)


def thread_href(thread_id: str, back: str | None, message_id: str = "") -> str:
    """The thread page, marking `message_id`, with the way back to the results."""
    return with_return(in_case(f"/threads/{quote(thread_id, safe='')}"), back, message=message_id)


def up_link(back: str | None, thread: str | None, month: Link | None, size: int) -> Link | None:
    """Where `u` leads from a message: the search it came from; else its thread, when it
    has more than this message; else its list's month; else nowhere."""
    if back:
        return Link(back, gettext("Back to the results"))
    if thread and size > 1:
        return Link(thread, gettext("The whole thread"))
    return month
