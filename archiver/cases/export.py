"""A case's production: its mail as the one visibility rule sees it, each message with the
case's custodians it was collected for, so de-duplication can produce it per custodian.

`export_case` is the one way a case is produced: `arsip case export` and the case's page
(`web.case_productions`) both collect, produce and audit through it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver.access import GRANTING_ROLES
from archiver.audit import record
from archiver.cases.models import Case
from archiver.cases.registry import CaseError, find_case
from archiver.cases.scope import case_messages
from archiver.core import Core
from archiver.languages import CORE
from archiver.models import MessageAddress
from archiver.production.models import Production
from archiver.production.plan import Collected, Dedupe
from archiver.production.run import Format, ProgressCallback, Request, Summary, produce
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


def export_case(
    core: Core,
    backend: SearchBackend,
    name: str,
    output: Path,
    actor: str,
    *,
    prefix: str | None = None,
    format: Format = Format.NATIVE,
    dedupe: Dedupe = Dedupe.NONE,
    progress: ProgressCallback | None = None,
) -> Summary:
    """Write case `name`'s mail as a production into `output`, numbered in the case's
    series, and audit it against the case as `case.export`. `CaseError` for a case that
    does not exist or covers nothing yet; `produce`'s errors as they are."""
    with core.sessions() as session:
        item = find_case(session, name)
        collected = list(case_collection(session, backend, item))
        series = case_series(item)
    if not collected:
        raise CaseError(
            CORE.lazy_gettext(
                "case %(name)s covers no archived message yet: nothing to export", name=name
            )
        )
    request = Request(series, output, actor, prefix, format, dedupe)
    summary = produce(core, request, collected, progress)
    with core.sessions.begin() as session:
        record(session, actor, "case.export", name, summary.audited())
    return summary


def case_productions(session: Session, case: Case) -> list[Production]:
    """The productions of the case's series, newest first, whoever wrote them."""
    return list(
        session.scalars(
            select(Production)
            .where(Production.series == case_series(case))
            .order_by(Production.id.desc())
        )
    )


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
