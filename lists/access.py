"""Which list archives a person may read: public ones, and private ones they belong to.

The search layer filters by list id (invariant 6); this is where a person's addresses
become those list ids. Lists without an archive have nothing to read.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from lists.models import ArchivePolicy, MailingList, Member


def readable_list_ids(session: Session, addresses: Iterable[str]) -> tuple[str, ...]:
    """The List-Ids (`name.domain`) whose archives the owner of `addresses` may read."""
    lowered = sorted({address.strip().lower() for address in addresses})
    member_of = select(Member.list_id).where(Member.address.in_(lowered))
    rows = session.execute(
        select(MailingList.name, MailingList.domain).where(
            or_(
                MailingList.archive == ArchivePolicy.PUBLIC,
                (MailingList.archive == ArchivePolicy.PRIVATE) & MailingList.id.in_(member_of),
            )
        )
    )
    return tuple(sorted(f"{name}.{domain}" for name, domain in rows))
