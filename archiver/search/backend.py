"""The search-backend interface both index implementations provide.

The archive hands a backend `SearchDocument`s to index and asks it questions as a parsed
query plus a `Viewer`; the viewer's filter is part of the backend's own query, so totals,
facets and pages only ever count what the viewer may see (invariant 6).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Protocol

from archiver.search.documents import SearchDocument
from archiver.search.query import Node
from archiver.search.viewer import Viewer


class IndexBusyError(RuntimeError):
    """Another process is writing the index, and the backend allows only one writer
    (whoosh)."""


class Sort(Enum):
    """Result order."""

    RELEVANCE = "relevance"
    DATE = "date"


@dataclass(frozen=True)
class Hit:
    """One matching message: its id, rank score, and when it was sent."""

    message_pk: int
    score: float
    date: datetime | None = None


@dataclass
class SearchResult:
    """A page of hits, the total count, and facet counts over the whole result set.

    `total_exact` is False when the total and the facets are estimates (PostgreSQL, past
    ten thousand matches): counting every match would cost more than the page itself.
    """

    total: int
    hits: list[Hit]
    facets: dict[str, dict[str, int]] = field(default_factory=dict)
    total_exact: bool = True


FACETS = ("list", "sender_domain", "year")
# Past this many matches a backend may estimate the total and the facets ("about N")
# rather than count every match; `exact_total` asks for the count.
EXACT_TOTAL_LIMIT = 10_000


class SearchBackend(Protocol):
    """What the indexer and the search service need from an index."""

    def index(self, documents: list[SearchDocument], defer_merges: bool = False) -> None:
        """Add or replace these documents (by message id), durably, in one commit.

        With `defer_merges`, an index that merges its parts (whoosh's segments) merges
        only what must not wait, and leaves the rest to `merge`: the indexer commits so,
        so that a batch never waits on a merge to become searchable.
        """
        ...

    def merge(self) -> None:
        """Do the merging `index` put off, if any (PostgreSQL has none to do)."""
        ...

    def delete(self, message_pks: list[int]) -> None:
        """Remove these messages from the index."""
        ...

    def rebuild(self, batches: Iterable[list[SearchDocument]]) -> int:
        """Replace the whole index with these documents; returns how many were indexed."""
        ...

    def clear(self) -> None:
        """Remove everything."""
        ...

    def needs_rebuild(self) -> bool:
        """Whether the index must be rebuilt from the archive before it is of use (a new
        index format after an upgrade)."""
        ...

    def search(
        self,
        query: Node | None,
        viewer: Viewer,
        sort: Sort,
        limit: int,
        offset: int,
        exact_total: bool = False,
    ) -> SearchResult:
        """The page [offset, offset + limit) of what `viewer` may see that matches `query`;
        the total and facets may be estimates past ten thousand matches unless
        `exact_total`."""
        ...

    def matching(self, query: Node | None) -> list[int]:
        """Every message id `query` matches (all when None), unranked and unfiltered: for
        retention and legal holds, which act on the whole archive, never for a person."""
        ...

    def close(self) -> None:
        """Release files and connections."""
        ...
