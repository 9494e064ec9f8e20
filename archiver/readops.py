"""The work behind the reading commands (`arsip search`, `show`, `stats`).

Each operation takes a `Core`, plain parameters and the actor to audit, and returns the
JSON-shaped answer that `--json` prints. The command line runs them itself when no
service is running, and the service runs them for it over its local socket
(`archiver.localsocket`) when one is, so both paths answer, audit and fail alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from archiver.core import Core


class ReadError(Exception):
    """A request the operator can fix; `status` is the command's exit status, `missing`
    says the message asked for is not archived (yet: `arsip show --wait` asks again)."""

    def __init__(self, message: str, status: int = 1, missing: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.missing = missing

    def as_answer(self) -> dict[str, Any]:
        """The error as the local socket carries it, and `arsip` reads it."""
        return {"error": str(self), "status": self.status, "missing": self.missing}


def audit_reading(
    core: Core, actor: str, action: str, target: str, details: dict[str, Any]
) -> None:
    """Record an operator's reading of the archive (a command-line action sees all mail)."""
    from archiver.audit import record

    with core.sessions.begin() as session:
        record(session, actor, action, target, details)


def search(core: Core, params: dict[str, Any], actor: str) -> dict[str, Any]:
    """A page of results for `params["query"]`, as the administrator or as `params["as"]`."""
    from archiver.accounts import viewer_for_address
    from archiver.search.backend import Sort
    from archiver.search.query import QuerySyntaxError
    from archiver.search.service import search as run_search
    from archiver.search.viewer import Viewer

    text, viewer = str(params.get("query", "")), params.get("as")
    who = Viewer.administrator()
    if viewer:  # an account sees what it sees on the web; another address its own mail
        with core.sessions() as session:
            who = viewer_for_address(session, viewer)
    backend = core.search_backend()
    try:
        with core.sessions() as session:
            page = run_search(
                session,
                backend,
                text,
                who,
                Sort(params.get("sort", "relevance")),
                int(params.get("limit", 20)),
                int(params.get("offset", 0)),
                store=core.store,
                exact_total=bool(params.get("exact")),
            )
    except QuerySyntaxError as exc:
        raise ReadError(f"bad query: {exc}", status=2) from exc
    finally:
        backend.close()
    details = {"as": viewer, "offset": params.get("offset", 0), "results": page.total}
    audit_reading(core, actor, "search", text, {**details, "via": "cli"})
    return page.as_json()


def show(core: Core, params: dict[str, Any], actor: str) -> dict[str, Any]:
    """One archived message's metadata, by Message-ID."""
    from archiver.models import ContentCheck
    from archiver.report import describe, find_message

    message_id = str(params.get("message_id", ""))
    with core.sessions() as session:
        message = find_message(session, message_id)
        if message is None:
            raise ReadError(
                f"no archived message has Message-ID <{message_id.strip('<>')}>", missing=True
            )
        data = describe(message, session.get(ContentCheck, message.id))
    audit_reading(
        core, actor, "message.view", message.message_id, {"sha256": message.sha256, "via": "cli"}
    )
    return data


def stats(core: Core, params: dict[str, Any], actor: str) -> dict[str, Any]:
    """Archive size, backlogs, content check counts, trusted timestamps and whether the
    daemons answer."""
    from archiver.report import daemons
    from archiver.report import stats as collect_stats
    from archiver.timestamps.report import figures as timestamp_figures

    with core.sessions() as session:
        figures: dict[str, Any] = {**collect_stats(session)}
        figures.update(timestamp_figures(core.settings, session))
    figures.update(daemons(core.checker))
    return figures


OPERATIONS: dict[str, Callable[[Core, dict[str, Any], str], dict[str, Any]]] = {
    "search": search,
    "show": show,
    "stats": stats,
}
