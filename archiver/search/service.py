"""Searching the archive: parse the query, ask the backend, dress the hits for people.

This is the one entry point the CLI, the web UI and the JSON API use, so every caller gets
the same viewer filtering, the same facets and the same snippets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver.models import Message
from archiver.search.analysis import TEXT_ANALYZER
from archiver.search.backend import SearchBackend, Sort
from archiver.search.own_text import own_text
from archiver.search.query import parse_query, words_to_highlight
from archiver.search.snippets import snippet
from archiver.search.viewer import Viewer
from archiver.store import DirectoryBlobStore
from archiver.texts import message_texts

MAX_LIMIT = 1000


@dataclass
class FoundMessage:
    """One search result as people see it."""

    id: int
    message_id: str
    subject: str
    sender: str
    sender_name: str
    date: datetime
    list_id: str | None
    snippet: str
    # The conversation it belongs to: the web UI folds a page's hits of one thread together.
    thread_id: str = ""

    def as_json(self) -> dict[str, Any]:
        """The CLI's and the API's shape of a result."""
        return {
            "id": self.id,
            "message_id": self.message_id,
            "subject": self.subject,
            "from": self.sender,
            "from_name": self.sender_name,
            "date": self.date.isoformat(),
            "list": self.list_id,
            "snippet": self.snippet,
        }


@dataclass
class SearchPage:
    """A page of results with the total and the facets of the whole result set."""

    total: int
    results: list[FoundMessage]
    facets: dict[str, dict[str, int]] = field(default_factory=dict)
    # False when `total` and `facets` are estimates (see `SearchResult.total_exact`)
    total_exact: bool = True

    def as_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "total_exact": self.total_exact,
            "results": [found.as_json() for found in self.results],
            "facets": self.facets,
        }


@lru_cache(maxsize=200_000)
def folded(word: str) -> str:
    """A word as the index holds it: lower-case, accents removed ("" for none)."""
    return next((token.text for token in TEXT_ANALYZER(word)), "")


def _snippet(body: str, highlight: list[str]) -> str:
    """A snippet of what the message itself says (`own_text`); where the words searched
    for are only in what it quotes, a snippet of the quote, which shows why it matched."""
    shown = snippet(own_text(body), highlight, folded)
    if highlight and "<mark>" not in shown:
        quoted = snippet(body, highlight, folded)
        if "<mark>" in quoted:
            return quoted
    return shown


def search(
    session: Session,
    backend: SearchBackend,
    text: str,
    viewer: Viewer,
    sort: Sort = Sort.RELEVANCE,
    limit: int = 20,
    offset: int = 0,
    *,
    store: DirectoryBlobStore,
    exact_total: bool = False,
) -> SearchPage:
    """Run `text` for `viewer`; raises `QuerySyntaxError` for a malformed query.

    The total may be an estimate past ten thousand matches (`SearchPage.total_exact`);
    `exact_total` asks for the count of every match, which costs a pass over all of them.

    Snippets are cut from the bodies of the page's messages, decoded from their blobs in
    `store` (only the page's, so a page costs the same however many messages match).
    """
    query = parse_query(text)
    limit = max(1, min(limit, MAX_LIMIT))
    result = backend.search(query, viewer, sort, limit, max(0, offset), exact_total)
    pks = [hit.message_pk for hit in result.hits]
    rows = {m.id: m for m in session.scalars(select(Message).where(Message.id.in_(pks)))}
    highlight = words_to_highlight(query)
    bodies = message_texts(store, [m.sha256 for m in rows.values()], attachments=False)
    found = [
        FoundMessage(
            id=m.id,
            message_id=m.message_id,
            subject=m.subject,
            sender=m.from_address,
            sender_name=m.from_name,
            date=m.date,
            list_id=m.list_id,
            snippet=_snippet(bodies[m.sha256].body, highlight),
            thread_id=m.thread_id,
        )
        for pk in pks
        if (m := rows.get(pk)) is not None
    ]
    return SearchPage(
        total=result.total, results=found, facets=result.facets, total_exact=result.total_exact
    )
