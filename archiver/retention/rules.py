"""Adding, listing and removing retention policies and legal holds, each change audited.

Scopes and hold queries are search queries, checked when they are saved, so a typo is
refused at once instead of silently matching nothing at the next sweep.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver import audit
from archiver.accounts import normalise_email
from archiver.languages import CORE, Text, TextError
from archiver.models import utcnow
from archiver.retention.models import LegalHold, RetentionPolicy, SweepState
from archiver.retention.periods import Period
from archiver.search.query import QuerySyntaxError, parse_query

NAME_LIMIT = 100


class RuleError(TextError):
    """A policy or hold that cannot be saved as asked; the text says why."""


def _name(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > NAME_LIMIT:
        raise RuleError(CORE.lazy_gettext("a name is 1 to %(limit)s characters", limit=NAME_LIMIT))
    return name


def _query(text: str | None, what: Text) -> str | None:
    """`text` if it is a query that finds something (None if it is empty); `what` names it
    in the error (a policy's scope, a hold's query)."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        if parse_query(text) is None:
            return None
    except QuerySyntaxError as exc:
        problem = CORE.lazy_gettext(
            "%(what)s %(query)s: %(problem)s", what=what, query=repr(text), problem=exc.described
        )
        raise RuleError(problem) from exc
    return text


def policies(session: Session) -> list[RetentionPolicy]:
    """Every policy, by name."""
    return list(session.scalars(select(RetentionPolicy).order_by(RetentionPolicy.name)))


def add_policy(
    session: Session, actor: str, name: str, keep: str, scope: str | None = None
) -> RetentionPolicy:
    """Save a new policy: keep what `scope` matches (everything when empty) for `keep`."""
    name = _name(name)
    period = Period.parse(keep)
    if session.scalar(select(RetentionPolicy).where(RetentionPolicy.name == name)):
        raise RuleError(
            CORE.lazy_gettext("a policy named %(name)s exists already", name=repr(name))
        )
    policy = RetentionPolicy(
        name=name,
        scope=_query(scope, CORE.lazy_gettext("scope")),
        keep=str(period),
        created_by=actor,
    )
    session.add(policy)
    audit.record(session, actor, "policy.add", name, {"scope": policy.scope, "keep": policy.keep})
    return policy


def remove_policy(session: Session, actor: str, name: str) -> None:
    """Delete a policy; what only it matched is kept forever from now on."""
    policy = session.scalar(select(RetentionPolicy).where(RetentionPolicy.name == name))
    if policy is None:
        raise RuleError(CORE.lazy_gettext("no policy is named %(name)s", name=repr(name)))
    audit.record(
        session, actor, "policy.remove", name, {"scope": policy.scope, "keep": policy.keep}
    )
    session.delete(policy)


def holds(session: Session, include_released: bool = False) -> list[LegalHold]:
    """The active holds (and the released ones when asked), by name."""
    query = select(LegalHold).order_by(LegalHold.name)
    if not include_released:
        query = query.where(LegalHold.released_at.is_(None))
    return list(session.scalars(query))


def add_hold(
    session: Session,
    actor: str,
    name: str,
    reason: str,
    query: str | None = None,
    custodians: Sequence[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
) -> LegalHold:
    """Place a hold: what matches the query, a custodian and the dates is kept until released.

    A hold must say what it covers (a query or a custodian): a hold over everything is a
    paused sweep, and `arsip retention pause` says that more plainly.
    """
    name = _name(name)
    reason = (reason or "").strip()
    if not reason:
        raise RuleError(CORE.lazy_gettext("a hold needs a reason (a matter, a case number)"))
    people = sorted({normalise_email(address) for address in custodians if address.strip()})
    for address in people:
        if "@" not in address:
            raise RuleError(
                CORE.lazy_gettext(
                    "custodian %(address)s is not an email address", address=repr(address)
                )
            )
    text = _query(query, CORE.lazy_gettext("query"))
    if text is None and not people:
        raise RuleError(CORE.lazy_gettext("a hold needs a query, a custodian or both"))
    if since is not None and until is not None and until < since:
        raise RuleError(CORE.lazy_gettext("the hold's end date is before its start date"))
    if session.scalar(select(LegalHold).where(LegalHold.name == name)):
        raise RuleError(
            CORE.lazy_gettext(
                "a hold named %(name)s exists already (released holds keep their names)",
                name=repr(name),
            )
        )
    hold = LegalHold(
        name=name,
        reason=reason,
        query=text,
        custodians=people,
        since=since,
        until=until,
        created_by=actor,
    )
    session.add(hold)
    audit.record(session, actor, "hold.add", name, describe_hold(hold))
    return hold


def release_hold(session: Session, actor: str, name: str) -> LegalHold:
    """End a hold; what it alone kept may go at the next sweep."""
    hold = session.scalar(select(LegalHold).where(LegalHold.name == name))
    if hold is None:
        raise RuleError(CORE.lazy_gettext("no hold is named %(name)s", name=repr(name)))
    if hold.released_at is not None:
        day = hold.released_at.date().isoformat()
        raise RuleError(
            CORE.lazy_gettext("hold %(name)s was released on %(day)s", name=repr(name), day=day)
        )
    hold.released_at = utcnow()
    hold.released_by = actor
    audit.record(session, actor, "hold.release", name, describe_hold(hold))
    return hold


def describe_hold(hold: LegalHold) -> dict[str, object]:
    """A hold as plain data, for the audit log and `--json`."""
    return {
        "name": hold.name,
        "reason": hold.reason,
        "query": hold.query,
        "custodians": list(hold.custodians),
        "since": hold.since.date().isoformat() if hold.since else None,
        "until": hold.until.date().isoformat() if hold.until else None,
        "created_at": hold.created_at.isoformat() if hold.created_at else None,
        "created_by": hold.created_by,
        "released_at": hold.released_at.isoformat() if hold.released_at else None,
        "released_by": hold.released_by,
    }


def sweep_state(session: Session) -> SweepState:
    """The single state row (made by the migration)."""
    state = session.get(SweepState, 1)
    if state is None:
        state = SweepState(id=1, paused=False, last_deleted=0)
        session.add(state)
        session.flush()
    return state


def set_paused(session: Session, actor: str, paused: bool) -> None:
    """Pause or resume sweeps; a sweep under way stops after its current batch."""
    state = sweep_state(session)
    state.paused = paused
    state.paused_by = actor if paused else None
    audit.record(session, actor, "retention.pause" if paused else "retention.resume")
