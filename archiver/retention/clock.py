"""Which date a message's retention counts from.

The `Date:` header is whatever the sender wrote: trusted alone, a message received a
minute ago with `Date: 01 Jan 1990` would be deleted by a 7-year policy on the next sweep.
Mail that reached the intake (SMTP, LMTP, a list post) has an arrival time the archive
took itself, so its age counts from the later of the two: a forged old date cannot age it,
and a forged future date only keeps it longer. Imported mail has no trustworthy arrival
(the import ran today, the mail may be years old), so it keeps its `Date:`.
"""

from __future__ import annotations

from datetime import datetime

from archiver.languages import CORE, Text

IMPORTED = "import"  # the `source` of mail read by `arsip import`


def counts_from(date: datetime, received_at: datetime, source: str) -> datetime:
    """The moment retention periods and hold date ranges measure this message by."""
    if source == IMPORTED:
        return date
    return max(date, received_at)


def counted_by(source: str) -> Text:
    """In words, which rule `counts_from` applied (for `arsip retention explain` and the
    retention page)."""
    if source == IMPORTED:
        return CORE.lazy_gettext("its Date: header (imported mail has no arrival time)")
    return CORE.lazy_gettext("the later of its Date: header and its arrival")
