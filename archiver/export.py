"""Archived messages, exactly as received, as mbox: `arsip export` by date, and the chosen
messages of a retention dry run (`arsip retention apply --dry-run --export mbox`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Row, Select, func, select

from archiver.core import Core
from archiver.mailfiles import mbox_entry
from archiver.models import Message

# Messages read per statement when exporting chosen ones.
CHUNK = 500
_ENTRY_COLUMNS = select(
    Message.id, Message.sha256, Message.envelope_from, Message.from_address, Message.date
)


def export_mbox(
    core: Core,
    output: Path,
    since: datetime | None = None,
    until: datetime | None = None,
    on_message: Callable[[int], None] | None = None,
) -> int:
    """Write the messages dated in [since, until) to `output` (mboxrd); return the count."""
    query = _dated(_ENTRY_COLUMNS, since, until).order_by(Message.date, Message.id)
    with core.sessions() as session:
        rows = session.execute(query).yield_per(500)
        return _write(output, (_entry(core, row) for row in rows), on_message)


def export_messages(
    core: Core,
    pks: Sequence[int],
    output: Path,
    on_message: Callable[[int], None] | None = None,
) -> int:
    """Write the messages `pks` names, in that order, to `output`; return the count (a
    message deleted meanwhile is left out)."""
    return _write(output, mbox_entries(core, pks), on_message)


def mbox_entries(core: Core, pks: Sequence[int]) -> Iterator[bytes]:
    """The mbox entries of the messages `pks` names, in that order, a chunk at a time (for
    a download that streams); messages deleted meanwhile are skipped."""
    for start in range(0, len(pks), CHUNK):
        chunk = pks[start : start + CHUNK]
        with core.sessions() as session:
            found = session.execute(_ENTRY_COLUMNS.where(Message.id.in_(chunk)))
            rows = {row.id: row for row in found}
        for pk in chunk:
            if pk in rows:
                yield _entry(core, rows[pk])


def count_messages(core: Core, since: datetime | None, until: datetime | None) -> int:
    """How many messages an export with these bounds will write (for the progress bar)."""
    query = _dated(select(func.count()).select_from(Message), since, until)
    with core.sessions() as session:
        return session.scalar(query) or 0


def _entry(core: Core, row: Row[Any]) -> bytes:
    """One message's mbox entry; the command line and staff see the envelope sender."""
    return mbox_entry(core.store.get(row.sha256), row.envelope_from or row.from_address, row.date)


def _write(output: Path, entries: Iterable[bytes], on_message: Callable[[int], None] | None) -> int:
    """Write `entries` beside `output` and rename at the end, so an interrupted export
    never leaves a truncated mbox that looks complete."""
    temp = output.with_name(f".{output.name}.part")
    count = 0
    with open(temp, "wb") as handle:
        for entry in entries:
            handle.write(entry)
            count += 1
            if on_message is not None:
                on_message(count)
    temp.replace(output)
    return count


def _dated(query: Select, since: datetime | None, until: datetime | None) -> Select:
    if since is not None:
        query = query.where(Message.date >= since)
    if until is not None:
        query = query.where(Message.date < until)
    return query
