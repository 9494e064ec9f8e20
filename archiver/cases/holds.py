"""The legal holds a case places, through the retention's own hold machinery.

`place_case_hold` turns the case's criteria into a hold with `retention.rules.add_hold`,
so the hold is checked, audited (`hold.add`) and applied by sweeps exactly as any other
hold, and links it to the case. It is idempotent: while an active hold of the case has
the case's current criteria, asking again changes nothing; after the criteria were
edited it places one more hold and keeps the old one (releasing it could let mail go that
the case once covered). `close_case` releases every active hold of the case through
`release_hold` (each audited as `hold.release`) and then closes it.

A hold counts a custodian in any role, Reply-To included, where the scope counts the
roles that make mail someone's own: the hold keeps a little more than reviewers see,
never less. A hold measures dates by the retention date (the later of `Date:` and arrival, for mail
the intake received) where the case's scope reads the message's `Date:`: for journal
mail the two are minutes apart; a message delivered after the case's last day falls
outside the hold but not the scope.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver import audit
from archiver.cases.models import Case, CaseHold
from archiver.cases.registry import Criteria, case_criteria, mark_closed, require_open
from archiver.retention.models import LegalHold
from archiver.retention.rules import add_hold, release_hold


def case_holds(session: Session, case: Case) -> list[LegalHold]:
    """Every hold placed for `case`, active and released, oldest first."""
    return list(
        session.scalars(
            select(LegalHold)
            .join(CaseHold, CaseHold.hold_id == LegalHold.id)
            .where(CaseHold.case_id == case.id)
            .order_by(LegalHold.id)
        )
    )


def hold_cases(session: Session) -> dict[str, str]:
    """The case each case hold was placed for, by the hold's name: how a message a hold
    keeps can say which matter keeps it."""
    rows = session.execute(
        select(LegalHold.name, Case.name)
        .join(CaseHold, CaseHold.hold_id == LegalHold.id)
        .join(Case, Case.id == CaseHold.case_id)
    )
    return {hold: case for hold, case in rows}


def _midnight(day: date | None) -> datetime | None:
    return None if day is None else datetime(day.year, day.month, day.day, tzinfo=UTC)


def _same(hold: LegalHold, covers: Criteria) -> bool:
    """Whether `hold` was placed with exactly these criteria."""
    return (
        hold.query == covers.query
        and sorted(hold.custodians) == list(covers.custodians)
        and hold.since == _midnight(covers.since)
        and hold.until == _midnight(covers.until)
    )


def _free_name(session: Session, case: Case) -> str:
    """`case NAME`, or `case NAME (2)` and on when a hold has that name (released holds
    keep theirs)."""
    taken = set(session.scalars(select(LegalHold.name).where(LegalHold.name.like("case %"))))
    name, number = f"case {case.name}", 1
    while name in taken:
        number += 1
        name = f"case {case.name} ({number})"
    return name


def place_case_hold(session: Session, actor: str, case: Case) -> tuple[LegalHold, bool]:
    """The case's active hold for its current criteria, placed now if there is none;
    whether it was placed now."""
    covers = case_criteria(case)
    for hold in case_holds(session, case):
        if hold.released_at is None and _same(hold, covers):
            return hold, False
    reason = f"case {case.name}" + (f": {case.description}" if case.description else "")
    hold = add_hold(
        session,
        actor,
        _free_name(session, case),
        reason,
        query=covers.query,
        custodians=covers.custodians,
        since=_midnight(covers.since),
        until=_midnight(covers.until),
    )
    session.flush()
    session.add(CaseHold(case_id=case.id, hold_id=hold.id))
    audit.record(session, actor, "case.hold", case.name, {"hold": hold.name})
    return hold, True


def close_case(session: Session, actor: str, case: Case) -> list[str]:
    """Release the case's active holds and close it; the names of the holds released.

    Its reviewers lose access with the close (`registry.may_review`).
    """
    require_open(case)
    released = []
    for hold in case_holds(session, case):
        if hold.released_at is None:
            release_hold(session, actor, hold.name)
            released.append(hold.name)
    mark_closed(session, actor, case, released)
    return released
