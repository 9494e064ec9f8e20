"""`arsip export`: write archived messages, exactly as received, to an mbox file."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy import Select, func, select

from archiver.core import Core
from archiver.mailfiles import mbox_entry
from archiver.models import Message


def export_mbox(
    core: Core,
    output: Path,
    since: datetime | None = None,
    until: datetime | None = None,
    on_message: Callable[[int], None] | None = None,
) -> int:
    """Write the messages dated in [since, until) to `output` (mboxrd); return the count.

    The file is written beside its final name and renamed at the end, so an interrupted
    export never leaves a truncated mbox that looks complete.
    """
    query = _dated(
        select(Message.sha256, Message.envelope_from, Message.from_address, Message.date),
        since,
        until,
    )
    temp = output.with_name(f".{output.name}.part")
    count = 0
    with core.sessions() as session, open(temp, "wb") as handle:
        rows = session.execute(query.order_by(Message.date, Message.id)).yield_per(500)
        for sha256, envelope_from, from_address, date in rows:
            data = core.store.get(sha256)
            handle.write(mbox_entry(data, envelope_from or from_address, date))
            count += 1
            if on_message is not None:
                on_message(count)
    temp.replace(output)
    return count


def count_messages(core: Core, since: datetime | None, until: datetime | None) -> int:
    """How many messages an export with these bounds will write (for the progress bar)."""
    query = _dated(select(func.count()).select_from(Message), since, until)
    with core.sessions() as session:
        return session.scalar(query) or 0


def _dated(query: Select, since: datetime | None, until: datetime | None) -> Select:
    if since is not None:
        query = query.where(Message.date >= since)
    if until is not None:
        query = query.where(Message.date < until)
    return query
