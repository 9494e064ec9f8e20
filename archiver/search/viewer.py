"""Who is searching: the identity every search and message fetch is filtered by."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from archiver.search.query import Node


@dataclass(frozen=True)
class Scope:
    """The part of the archive a viewer is limited to: a legal case's mail.

    `query` says which messages (the backends filter searches by it, as they filter by a
    person's addresses); `members` are the ids it matches, which the database's fetches (a
    message, a thread, an export's rows) are checked against. Both come from the search
    backend (`archiver.cases.scope`), so a page opens exactly the messages a search in the
    scope finds. `members` is evaluated by `resolve` when a fetch first needs it, once per
    viewer: a search inside the scope needs only the query, and costs no pass over the
    index to list every member.
    """

    query: Node
    resolve: Callable[[], frozenset[int]] = field(default=frozenset, repr=False, compare=False)

    @cached_property
    def members(self) -> frozenset[int]:
        return self.resolve()


@dataclass(frozen=True)
class Viewer:
    """A person looking at the archive.

    `sees_all` is for administrators and auditors. Everyone else sees the messages where one
    of their addresses is the sender, a header recipient or an envelope recipient, plus the
    archives of the lists in `readable_lists` (invariant 6).
    """

    addresses: frozenset[str] = frozenset()
    sees_all: bool = False
    readable_lists: frozenset[str] = frozenset()
    # When set, the viewer sees what the scope holds and nothing else: not their own mail,
    # not their lists, not everything (a case's reviewer inside the case).
    scope: Scope | None = None

    @classmethod
    def administrator(cls) -> Viewer:
        """Sees everything (the CLI's default, and auditors)."""
        return cls(sees_all=True)

    @classmethod
    def within(cls, scope: Scope) -> Viewer:
        """Someone who sees `scope` only, whoever they are elsewhere."""
        return cls(scope=scope)

    @classmethod
    def person(cls, *addresses: str, lists: tuple[str, ...] = ()) -> Viewer:
        """An ordinary user known by one or more addresses."""
        return cls(
            addresses=frozenset(address.strip().lower() for address in addresses),
            readable_lists=frozenset(list_id.lower() for list_id in lists),
        )
