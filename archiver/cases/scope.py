"""A case's mail as the one visibility rule sees it, and as an export walks it.

The case's criteria become one search-query tree (`scope_query`): any custodian as a
participant (sender or recipient in a role that grants access, envelope included, as a
person's own mail is decided), AND the date range, AND any of the queries. A viewer
limited to that tree (`case_viewer`) is what a reviewer is inside the case:

- searches hand the tree to the backend as the viewer's filter, where a person's
  addresses would be, so pages, totals and facets count only the case's mail;
- the database's fetches (a message page, a thread, downloads, an export's rows) check
  the message ids against the tree's matches, evaluated by the same backend the first time
  a fetch needs them, once per viewer (`access.visible_messages`).

Evaluating the queries into ids is what PostgreSQL and whoosh already do for retention
and holds (`SearchBackend.matching`), a single pass over the index per request; the
alternative, AND-ing the case into each fetch as a search restricted to that message,
would need a second copy of the rule for every kind of fetch. Mail not yet indexed is in
neither the search nor the ids, so the two always agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver.cases.models import Case
from archiver.cases.registry import combined_query
from archiver.id_sets import in_ids
from archiver.models import Message
from archiver.search.backend import SearchBackend
from archiver.search.query import And, DateRange, Node, Or, Participant, parse_query
from archiver.search.viewer import Scope, Viewer

EXPORT_BATCH = 1000  # ids read from the database at a time


def scope_query(case: Case) -> Node:
    """The search-query tree of the case's mail (see the module's docstring).

    Its queries are read as they were saved, even if a later version of the query
    language would refuse one (as holds do); a case always has custodians or queries.
    """
    parts: list[Node] = []
    people: list[Node] = [Participant(address) for address in case.custodians]
    if people:
        parts.append(people[0] if len(people) == 1 else Or(tuple(people)))
    if case.since is not None or case.until is not None:
        end = case.until + timedelta(days=1) if case.until is not None else None
        parts.append(DateRange(case.since, end))  # the last day is a whole day
    text = combined_query(case.queries)
    query = parse_query(text, unknown_fields=True) if text else None
    if query is not None:
        parts.extend(query.nodes if isinstance(query, And) else (query,))
    if not parts:
        raise ValueError(f"case {case.name!r} has no criteria: it would be everything")
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def case_viewer(backend: SearchBackend, case: Case) -> Viewer:
    """Someone who sees `case`'s mail and nothing else: a reviewer inside the case, and
    what an export of the case reads as."""
    query = scope_query(case)
    return Viewer.within(Scope(query, lambda: frozenset(backend.matching(query))))


def case_messages(session: Session, backend: SearchBackend, case: Case) -> Iterator[int]:
    """The ids of the case's messages, oldest first (by date, then arrival): what a
    production of the case contains, by the same rule its reviewers see."""
    members = backend.matching(scope_query(case))
    yield from session.scalars(
        select(Message.id)
        .where(in_ids(Message.id, members))
        .order_by(Message.date, Message.id)
        .execution_options(yield_per=EXPORT_BATCH)
    )
