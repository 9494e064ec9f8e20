"""The search page, the site's front door, and exporting a search's results as mbox.

Both views hand the request's viewer to the search service, so what a person may see is
decided below the UI (invariant 6): totals, facets, pages and exports all come from the
same filtered query. The page works without JavaScript: facets, the sort switch and
pagination are plain links that carry the query along.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote

from flask import Blueprint, Response, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import format_number, gettext, lazy_gettext, ngettext
from markupsafe import Markup
from sqlalchemy import select

from archiver.access import visible_messages
from archiver.mailfiles import mbox_entry
from archiver.models import Message
from archiver.search.backend import SearchBackend, Sort
from archiver.search.query import Node, QuerySyntaxError, parse_query
from archiver.search.service import FoundMessage, SearchPage, search
from archiver.search.viewer import Viewer
from web.audit_hooks import audit_read
from web.auth import current_viewer, login_required
from web.case_context import in_case

# BACKEND_KEY stays importable here for the tests that close the app's shared backend.
from web.deps import BACKEND_KEY as BACKEND_KEY
from web.deps import get_core, search_backend
from web.i18n import format_moment, say
from web.navigation import Conversation, conversations, distinct, with_return

if TYPE_CHECKING:
    from archiver.core import Core

bp = Blueprint("search", __name__)

PAGE_SIZE = 20
# Nobody reads page 10,000; a bound keeps a crafted offset inside every backend's integers.
MAX_PAGE = 10_000
# The search service's largest page: an export walks the result set in steps this big.
EXPORT_PAGE = 1000
FACETS_SHOWN = 10

# Facet name -> (heading, query field that narrows to one of its values).
FACETS = {
    "list": (lazy_gettext("Lists"), "list"),
    "sender_domain": (lazy_gettext("Sender domains"), "from"),
    "year": (lazy_gettext("Years"), "date"),
}
SORT_LABELS = {Sort.RELEVANCE: lazy_gettext("relevance"), Sort.DATE: lazy_gettext("date")}


@dataclass(frozen=True)
class QueryProblem:
    """A query the search page cannot read, as it shows it: the problem in the page's
    language, and the 0-based position it underlines."""

    message: str
    position: int

    @classmethod
    def of(cls, error: QuerySyntaxError) -> QueryProblem:
        return cls(say(error.text), error.position)


def private_page_headers(response: Response) -> Response:
    """No cache anywhere may keep a copy: for the pages of the audit log and of retention,
    which name who read what and which legal matters."""
    response.headers["Cache-Control"] = "private, no-store"
    return response


@dataclass(frozen=True)
class FacetLink:
    """One facet value: how many results have it, and the query narrowed to it."""

    label: str
    count: int
    href: str | None


@dataclass(frozen=True)
class Result:
    """A search result with what the template needs already worked out."""

    found: FoundMessage
    href: str  # the message, with the way back to this page of results
    thread_href: str
    when: str
    when_iso: str
    snippet: Markup


def _sort() -> Sort:
    try:
        return Sort(request.args.get("sort", Sort.RELEVANCE.value))
    except ValueError:
        return Sort.RELEVANCE


def _page_number() -> int:
    try:
        return min(MAX_PAGE, max(1, int(request.args.get("page", "1"))))
    except ValueError:
        return 1


def _search_url(q: str, sort: Sort, page: int = 1, exact: bool = False) -> str:
    """A link to the search page; page 1, the default sort and estimated totals are left
    out to keep it short."""
    args: dict[str, str | int] = {"q": q}
    if sort is not Sort.RELEVANCE:
        args["sort"] = sort.value
    if page > 1:
        args["page"] = page
    if exact:
        args["exact"] = 1
    return in_case(url_for("search.index", **args))


def facet_term(field: str, value: str) -> str | None:
    """`field:value` as the query language reads it back, or None if it cannot be written.

    A value with spaces or parentheses is quoted; one holding a quote cannot be, and such a
    facet is shown without a link rather than as a link to a different search.
    """
    if not value or '"' in value:
        return None
    if any(char.isspace() or char in "()" for char in value):
        return f'{field}:"{value}"'
    return f"{field}:{value}"


def _facet_links(q: str, sort: Sort, page: SearchPage) -> list[tuple[str, list[FacetLink]]]:
    groups = []
    for name, (heading, field) in FACETS.items():
        counts = page.facets.get(name) or {}
        if name == "year":
            ordered = sorted(counts.items(), reverse=True)
        else:
            ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        links = []
        for value, count in ordered[:FACETS_SHOWN]:
            term = facet_term(field, value)
            href = None if term is None else _search_url(f"{q} {term}".strip(), sort)
            links.append(FacetLink(value, count, href))
        if links:
            groups.append((heading, links))
    return groups


def _utc(when: datetime) -> datetime:
    return when.astimezone(UTC) if when.tzinfo is not None else when


def _result(found: FoundMessage, back: str) -> Result:
    return Result(
        found=found,
        href=with_return(in_case("/messages/" + quote(found.message_id, safe="@")), back),
        thread_href=with_return(
            in_case("/threads/" + quote(found.thread_id, safe="")), back, message=found.message_id
        ),
        when=format_moment(_utc(found.date)),
        when_iso=_utc(found.date).strftime("%Y-%m-%dT%H:%MZ"),
        # The snippet builder escapes the message text itself and adds only <mark> tags,
        # so this HTML is safe to put on the page as it is.
        snippet=Markup(found.snippet),
    )


def _messages(count: int) -> str:
    return ngettext("%(count)s message", "%(count)s messages", count, count=format_number(count))


def message_count(total: int, exact: bool = True) -> str:
    """ "1,234 messages", or "about 52,000 messages" when the backend estimated."""
    if exact:
        return _messages(total)
    shown = format_number(total)
    return ngettext("about %(count)s message", "about %(count)s messages", total, count=shown)


def _on_this_page(results: list[Result], grouped: list[Conversation[Result]]) -> str:
    """ "this page: 20 messages in 14 conversations": the total counts messages, and a
    conversation entry stands for the page's messages of one thread."""
    return ngettext(
        "this page: %(messages)s in %(conversations)s conversation",
        "this page: %(messages)s in %(conversations)s conversations",
        len(grouped),
        messages=_messages(len(results)),
        conversations=format_number(len(grouped)),
    )


def _senders(conversation: Conversation[Result]) -> list[str]:
    """Who wrote the conversation's matching messages, each once, as Gmail lists them."""
    return distinct(r.found.sender_name or r.found.sender for r in conversation.items)


@bp.get("/")
def index() -> ResponseReturnValue:
    """The search box with the query language's help, or one page of results."""
    return results_page("search.html")


def results_page(
    template: str, everything_when_empty: bool = False, **extra: object
) -> ResponseReturnValue:
    """A page of results for this request's query (`q`, `sort`, `page`, `exact`) and
    viewer, rendered with `template` and `extra`; without a query, the help, or with
    `everything_when_empty` the newest of all the viewer sees (a case's mail)."""
    q = request.args.get("q", "").strip()
    sort = _sort()
    number = _page_number()
    exact = request.args.get("exact") == "1"
    context: dict[str, object] = {"title": gettext("Search"), "q": q, "sort": sort.value}
    if not q and not everything_when_empty:
        return render_template(template, **{**context, **extra})
    try:
        with get_core().sessions() as session:
            page = search(
                session,
                search_backend(),
                q,
                current_viewer(),
                sort,
                limit=PAGE_SIZE,
                offset=(number - 1) * PAGE_SIZE,
                store=get_core().store,
                exact_total=exact,
            )
    except QuerySyntaxError as error:
        context.update(title=gettext("%(query)s · Search", query=q), error=QueryProblem.of(error))
        return render_template(template, **{**context, **extra}), 400
    audit_read(current_viewer(), "search", q, {"page": number, "results": page.total})
    last_page = max(1, -(-page.total // PAGE_SIZE))
    here = _search_url(q, sort, number, exact)
    results = [_result(found, here) for found in page.results]
    grouped = conversations(results, lambda result: result.found.thread_id)
    context.update(
        title=gettext("%(query)s · Search", query=q),
        total=message_count(page.total, page.total_exact),
        exact_counts=page.total_exact,
        count_exactly=None if page.total_exact else _search_url(q, sort, number, exact=True),
        results=results,
        conversations=[(conversation, _senders(conversation)) for conversation in grouped],
        on_this_page=_on_this_page(results, grouped) if results else "",
        facets=_facet_links(q, sort, page),
        sorts=[(SORT_LABELS[s], _search_url(q, s), s is sort) for s in Sort],
        previous=_search_url(q, sort, number - 1) if number > 1 else None,
        next=_search_url(q, sort, number + 1) if number < last_page else None,
        page_number=number,
        last_page=last_page,
        export=in_case(url_for("search.export", q=q, sort=sort.value)),
    )
    return render_template(template, **{**context, **extra})


@bp.get("/export.mbox")
@login_required
def export() -> ResponseReturnValue:
    """Every message of a search the viewer may see, as received, in one mboxrd download."""
    q = request.args.get("q", "").strip()
    sort = _sort()
    try:
        query = parse_query(q)
    except QuerySyntaxError as error:
        problem = QueryProblem.of(error)
        context = {"title": gettext("Search"), "q": q, "sort": sort.value, "error": problem}
        return render_template("search.html", **context), 400
    audit_read(current_viewer(), "export", q, {"sort": sort.value, "format": "mbox"})
    # The generator outlives the request, so it gets its parts now, not from the context.
    messages = _export_entries(get_core(), search_backend(), query, current_viewer(), sort)
    return Response(
        messages,
        content_type="application/mbox",
        headers={"Content-Disposition": 'attachment; filename="arsip-export.mbox"'},
    )


def _export_entries(
    core: Core, backend: SearchBackend, query: Node | None, viewer: Viewer, sort: Sort
) -> Iterator[bytes]:
    """The mbox entries of the whole result set, a result page at a time.

    Mail indexed while the download runs can shift later pages; a message seen on an
    earlier page is not written twice.
    """
    written: set[int] = set()
    offset = 0
    while True:
        result = backend.search(query, viewer, sort, EXPORT_PAGE, offset)
        pks = [hit.message_pk for hit in result.hits if hit.message_pk not in written]
        with core.sessions() as session:
            rows = {
                row.id: row
                for row in session.execute(
                    select(
                        Message.id,
                        Message.sha256,
                        Message.envelope_from,
                        Message.from_address,
                        Message.date,
                    ).where(Message.id.in_(pks), visible_messages(viewer))
                )
            }
        for pk in pks:
            row = rows.get(pk)
            if row is None:
                continue  # deleted since the index was written
            written.add(pk)
            # The envelope sender is for those who see everything, as on the message page.
            sender = (row.envelope_from if viewer.sees_all else "") or row.from_address
            yield mbox_entry(core.store.get(row.sha256), sender, row.date)
        offset += EXPORT_PAGE
        if len(result.hits) < EXPORT_PAGE:  # the last page (the total may be an estimate)
            return
