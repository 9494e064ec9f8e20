"""Opening, changing and listing cases, and giving accounts the reviewer role on one.

A case's criteria are checked when they are saved, as a hold's are: a typo in a query, an
address that is not one, dates in the wrong order, or a case with neither custodians nor
queries (which would be the whole archive) are refused at once. Every change is audited
against the case's name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver import audit
from archiver.accounts import BadEmail, Role, User, find_user, normalise_email
from archiver.cases.models import CLOSED, OPEN, Case, CaseReviewer
from archiver.languages import CORE, TextError
from archiver.models import utcnow
from archiver.search.query import MAX_QUERY_LENGTH, QuerySyntaxError, parse_query

# Names appear in addresses (`/cases/<name>/`) and commands: letters, digits, . _ -
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DESCRIPTION_LIMIT = 2000


class CaseError(TextError):
    """A case, or a change to one, that cannot be saved as asked; the text says why."""


@dataclass(frozen=True)
class Criteria:
    """What a case covers: mail of one of the custodians, dated from `since` to `until`
    (inclusive days), matching one of the queries; empty parts do not narrow."""

    custodians: tuple[str, ...] = ()
    queries: tuple[str, ...] = ()
    since: date | None = None
    until: date | None = None

    @property
    def query(self) -> str | None:
        """The queries as one search query: each in parentheses, OR-ed (None: no query)."""
        return combined_query(self.queries)


def combined_query(queries: Sequence[str]) -> str | None:
    """One query matching what any of `queries` matches; None when there are none."""
    if not queries:
        return None
    if len(queries) == 1:
        return queries[0]
    return " OR ".join(f"({query})" for query in queries)


def criteria(
    custodians: Sequence[str] = (),
    queries: Sequence[str] = (),
    since: date | None = None,
    until: date | None = None,
) -> Criteria:
    """Checked criteria: addresses lower-cased, each query readable, the dates in order,
    and something to go by (custodians or queries)."""
    people: list[str] = []
    for address in custodians:
        if not address.strip():
            continue
        try:
            people.append(normalise_email(address))
        except BadEmail as exc:
            raise CaseError(
                CORE.lazy_gettext(
                    "custodian %(address)s is not an email address", address=repr(address)
                )
            ) from exc
    texts = [query.strip() for query in queries if query.strip()]
    for text in texts:
        _check_query(text)
    if not people and not texts:
        raise CaseError(
            CORE.lazy_gettext("a case needs custodians, queries or both: else it is everything")
        )
    if since is not None and until is not None and until < since:
        raise CaseError(CORE.lazy_gettext("the case's end date is before its start date"))
    found = Criteria(tuple(sorted(set(people))), tuple(dict.fromkeys(texts)), since, until)
    if found.query is not None and len(found.query) > MAX_QUERY_LENGTH:
        raise CaseError(
            CORE.lazy_gettext(
                "the queries are too long together: at most %(limit)s characters",
                limit=MAX_QUERY_LENGTH,
            )
        )
    if found.query is not None:
        _check_query(found.query)
    return found


def _check_query(text: str) -> None:
    try:
        node = parse_query(text)
    except QuerySyntaxError as exc:
        raise CaseError(
            CORE.lazy_gettext(
                "query %(query)s: %(problem)s", query=repr(text), problem=exc.described
            )
        ) from exc
    if node is None:
        raise CaseError(CORE.lazy_gettext("query %(query)s finds nothing", query=repr(text)))


def _name(name: str) -> str:
    name = (name or "").strip()
    if not NAME.fullmatch(name):
        raise CaseError(
            CORE.lazy_gettext(
                "a case's name is 1 to 64 letters, digits, dots, dashes or underscores, "
                "starting with a letter or digit"
            )
        )
    return name


def _description(text: str) -> str:
    text = (text or "").strip()
    if len(text) > DESCRIPTION_LIMIT:
        raise CaseError(
            CORE.lazy_gettext(
                "a description is at most %(limit)s characters", limit=DESCRIPTION_LIMIT
            )
        )
    return text


def describe_case(case: Case) -> dict[str, object]:
    """A case as plain data, for the audit log and `--json`."""
    return {
        "name": case.name,
        "description": case.description,
        "status": case.status,
        "custodians": list(case.custodians),
        "queries": list(case.queries),
        "since": case.since.isoformat() if case.since else None,
        "until": case.until.isoformat() if case.until else None,
        "created_at": case.created_at.isoformat() if case.created_at else None,
        "created_by": case.created_by,
        "closed_at": case.closed_at.isoformat() if case.closed_at else None,
        "closed_by": case.closed_by,
    }


def case_criteria(case: Case) -> Criteria:
    """The criteria a case was saved with."""
    return Criteria(tuple(case.custodians), tuple(case.queries), case.since, case.until)


def create_case(
    session: Session, actor: str, name: str, description: str, covers: Criteria
) -> Case:
    """Open a new case covering `covers`."""
    name = _name(name)
    if session.scalar(select(Case.id).where(Case.name == name)) is not None:
        raise CaseError(CORE.lazy_gettext("a case named %(name)s exists already", name=repr(name)))
    case = Case(
        name=name,
        description=_description(description),
        custodians=list(covers.custodians),
        queries=list(covers.queries),
        since=covers.since,
        until=covers.until,
        status=OPEN,
        created_by=actor,
    )
    session.add(case)
    session.flush()
    audit.record(session, actor, "case.create", name, describe_case(case))
    return case


def edit_case(session: Session, actor: str, case: Case, description: str, covers: Criteria) -> None:
    """Change an open case's description and criteria (its holds stay as they were placed:
    `place_case_hold` places one for the new criteria)."""
    require_open(case)
    before = describe_case(case)
    case.description = _description(description)
    case.custodians = list(covers.custodians)
    case.queries = list(covers.queries)
    case.since = covers.since
    case.until = covers.until
    audit.record(session, actor, "case.edit", case.name, {"before": before, **describe_case(case)})


def find_case(session: Session, name: str) -> Case:
    """The case named `name`; `CaseError` if there is none."""
    case = session.scalar(select(Case).where(Case.name == (name or "").strip()))
    if case is None:
        raise CaseError(CORE.lazy_gettext("no case is named %(name)s", name=repr(name)))
    return case


def all_cases(session: Session) -> list[Case]:
    """Every case, open ones first, by name."""
    found = session.scalars(select(Case).order_by(Case.name))
    return sorted(found, key=lambda case: not case.is_open)


def sees_every_case(user: User | None) -> bool:
    """Administrators and auditors review every case (they see all mail anyway)."""
    return user is not None and user.role in (Role.ADMIN, Role.AUDITOR)


def reviewable_cases(session: Session, user: User | None) -> list[Case]:
    """The cases `user` may open: every case for administrators and auditors, the open
    cases they review for anyone else."""
    if user is None:
        return []
    if sees_every_case(user):
        return all_cases(session)
    return list(
        session.scalars(
            select(Case)
            .join(CaseReviewer, CaseReviewer.case_id == Case.id)
            .where(CaseReviewer.user_id == user.id, Case.status == OPEN)
            .order_by(Case.name)
        )
    )


def may_review(session: Session, user: User | None, case: Case) -> bool:
    """Whether `user` may read `case`'s mail: administrators and auditors always, its
    reviewers while it is open (a closed case's reviewers lose access)."""
    if user is None or user.disabled_at is not None:
        return False
    if sees_every_case(user):
        return True
    if not case.is_open:
        return False
    found = session.get(CaseReviewer, (case.id, user.id))
    return found is not None


def reviewers(session: Session, case: Case) -> list[User]:
    """The case's reviewers, by email."""
    return list(
        session.scalars(
            select(User)
            .join(CaseReviewer, CaseReviewer.user_id == User.id)
            .where(CaseReviewer.case_id == case.id)
            .order_by(User.email)
        )
    )


def _account(session: Session, email: str) -> User:
    user = find_user(session, email)
    if user is None:
        raise CaseError(CORE.lazy_gettext("no account has the email %(email)s", email=repr(email)))
    return user


def require_open(case: Case) -> None:
    """`CaseError` unless `case` is open: a closed case is a record, no longer changed."""
    if not case.is_open:
        raise CaseError(CORE.lazy_gettext("case %(name)s is closed", name=repr(case.name)))


def add_reviewer(session: Session, actor: str, case: Case, email: str) -> bool:
    """Give the account `email` the reviewer role on `case`; False if it had it already."""
    require_open(case)
    user = _account(session, email)
    if session.get(CaseReviewer, (case.id, user.id)) is not None:
        return False
    session.add(CaseReviewer(case_id=case.id, user_id=user.id, added_by=actor))
    audit.record(session, actor, "case.reviewer.add", case.name, {"reviewer": user.email})
    return True


def remove_reviewer(session: Session, actor: str, case: Case, email: str) -> bool:
    """Take the reviewer role on `case` from the account `email`; False if it had none."""
    user = _account(session, email)
    found = session.get(CaseReviewer, (case.id, user.id))
    if found is None:
        return False
    session.delete(found)
    audit.record(session, actor, "case.reviewer.remove", case.name, {"reviewer": user.email})
    return True


def mark_closed(session: Session, actor: str, case: Case, released: list[str]) -> None:
    """Record that `case` is closed, after its holds (`released`) were released."""
    require_open(case)
    case.status = CLOSED
    case.closed_at = utcnow()
    case.closed_by = actor
    audit.record(session, actor, "case.close", case.name, {"released_holds": released})
