"""The links that take a reader back where they came from, and the conversations a page's
messages fold into.

A search result's link carries the search it came from (`?from=/?q=...&page=2`), so the
message page can offer "back to the results" (`rel="up"`, the `u` key) and keep offering
it while the reader walks the thread with `j` and `k`. The address comes from the
request, so it is accepted only as a path on this site that opens the search page: no
other site, no other page, nothing a crafted link could turn into a redirect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from urllib.parse import quote

from flask import request

from web.case_context import in_case

# The longest search address carried along; a real one is far shorter.
MAX_RETURN = 2000
_FORBIDDEN = set("\\\r\n\t\x00")

T = TypeVar("T")


def search_return(value: str | None) -> str | None:
    """`value` if it is a link to this site's search page (`/?...`), or inside a case to
    the case's (`/cases/<name>/?...`), else None."""
    if not value or len(value) > MAX_RETURN or not value.startswith(in_case("/?")):
        return None
    if any(char in _FORBIDDEN or ord(char) < 0x20 for char in value):
        return None
    return value


def requested_return() -> str | None:
    """The search this request came from, as `search_return` accepts it."""
    return search_return(request.args.get("from"))


def with_return(url: str, back: str | None, **args: str) -> str:
    """`url` with `args` and, when there is one, the search to come back to."""
    pairs = [(name, value) for name, value in args.items() if value]
    if back:
        pairs.append(("from", back))
    if not pairs:
        return url
    return url + "?" + "&".join(f"{name}={quote(value, safe='')}" for name, value in pairs)


@dataclass
class Conversation(Generic[T]):
    """A thread's messages among those a page shows, in the page's order: the first is
    the best match (or the newest), the one a conversation entry shows."""

    thread_id: str
    items: list[T] = field(default_factory=list)

    @property
    def first(self) -> T:
        return self.items[0]

    @property
    def count(self) -> int:
        return len(self.items)


def conversations(items: Iterable[T], thread_of: Callable[[T], str]) -> list[Conversation[T]]:
    """`items` folded by thread, each conversation where its first item stood.

    Only the items given are folded (one page of results, one month of a list), so a page
    costs the same however long its threads are; a thread that continues on the next page
    of results shows there again.
    """
    found: dict[str, Conversation[T]] = {}
    for item in items:
        key = thread_of(item) or f"#{id(item)}"  # a message without a thread stands alone
        found.setdefault(key, Conversation(key)).items.append(item)
    return list(found.values())


def distinct(values: Iterable[str]) -> list[str]:
    """`values` in their order, each once: the writers of a conversation, say."""
    return list(dict.fromkeys(values))
