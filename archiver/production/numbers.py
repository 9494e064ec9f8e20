"""Control numbers (Bates numbers): a prefix and seven digits, `ABC0000001`, handed out by
the database so that they run on across the productions of a series and never repeat."""

from __future__ import annotations

import re

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from archiver.production.errors import ProductionError
from archiver.production.models import ProductionSeries

DIGITS = 7  # ABC0000001: the width review platforms expect (a longer series grows wider)
DEFAULT_PREFIX = "ARSIP"
# A prefix is part of every file name and load-file value: letters and digits, with the
# separators Bates prefixes use, never a path separator or a space
_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")


def control_number(prefix: str, number: int) -> str:
    """The control number `number` of a series with `prefix`."""
    return f"{prefix}{number:0{DIGITS}d}"


def checked_prefix(prefix: str) -> str:
    """`prefix` if it can start file names on every system; ProductionError if not."""
    if not _PREFIX.fullmatch(prefix) or prefix.endswith("."):
        raise ProductionError(
            f"prefix {prefix!r}: use 1 to 32 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )
    return prefix


def series_prefix(session: Session, series: str, prefix: str | None) -> str:
    """The prefix a production of `series` numbers with: the series' own once it has one
    (another is refused: its numbers would not run on), else `prefix` or the default."""
    known = session.scalar(select(ProductionSeries.prefix).where(ProductionSeries.key == series))
    if known is None:
        return checked_prefix(prefix or DEFAULT_PREFIX)
    if prefix is not None and prefix != known:
        raise ProductionError(
            f"series {series!r} numbers with the prefix {known}: give --prefix {known} "
            "or leave it out"
        )
    return known


def reserve(session: Session, series: str, prefix: str, count: int) -> int:
    """Reserve the next `count` numbers of `series` in `session`'s transaction; return the
    first. The series is made on first use; the row update serialises concurrent runs."""
    try:
        with session.begin_nested():
            session.add(ProductionSeries(key=series, prefix=prefix, next_number=1))
    except IntegrityError:
        pass  # the series exists (another run may have just made it)
    following = session.execute(
        update(ProductionSeries)
        .where(ProductionSeries.key == series)
        .values(next_number=ProductionSeries.next_number + count)
        .returning(ProductionSeries.next_number)
    ).scalar_one()
    return int(following) - count
