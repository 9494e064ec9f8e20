"""A case's production: its mail as the one visibility rule sees it, each message with the
case's custodians it was collected for, so de-duplication can produce it per custodian."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver.access import GRANTING_ROLES
from archiver.cases.models import Case
from archiver.cases.scope import case_messages
from archiver.models import MessageAddress
from archiver.production.plan import Collected
from archiver.search.backend import SearchBackend

BATCH = 1000  # messages whose custodians are read per statement


def case_series(case: Case) -> str:
    """The series whose control numbers run on across the productions of one case."""
    return f"case:{case.name}"


def case_collection(session: Session, backend: SearchBackend, case: Case) -> Iterator[Collected]:
    """The case's messages, oldest first, each with the custodians it is the mail of (none
    for mail the case holds by its queries alone)."""
    custodians = sorted(case.custodians)
    pks = list(case_messages(session, backend, case))
    for start in range(0, len(pks), BATCH):
        yield from _with_custodians(session, pks[start : start + BATCH], custodians)


def _with_custodians(session: Session, pks: list[int], custodians: list[str]) -> list[Collected]:
    found: dict[int, set[str]] = defaultdict(set)
    if pks and custodians:
        rows = session.execute(
            select(MessageAddress.message_pk, MessageAddress.address).where(
                MessageAddress.message_pk.in_(pks),
                MessageAddress.address.in_(custodians),
                MessageAddress.role.in_(GRANTING_ROLES),
            )
        )
        for pk, address in rows:
            found[pk].add(address)
    return [Collected(pk, tuple(sorted(found[pk]))) for pk in pks]
