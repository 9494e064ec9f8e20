"""The auditors' page: the audit trail, newest first, and a check that it is unbroken.

For administrators and auditors only; anyone else gets 404, as on the other private
pages. Filters are a GET form, so a filtered view is a link one auditor can send another.
Pages are cut by sequence number (`before`), not by offset, so paging stays cheap on a
long log and new entries do not shift the page being read.

Checking the chain reads every entry, which takes a while on a long log, so it runs only
when asked (`?verify=1`, the button on the page); the head (count and newest hash) is
shown always, since reading it costs one row. Looking at this page is not itself
recorded: it shows only what the log already holds.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flask import Blueprint, abort, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext

from archiver import audit
from archiver.accounts import Role
from web.auth import current_user, login_required
from web.deps import get_core
from web.search import private_page_headers

bp = Blueprint("audit", __name__)

PAGE_SIZE = 100
PROBLEMS_SHOWN = 50
FILTERS = ("action", "actor", "since", "until")


bp.after_request(private_page_headers)


def _day(name: str, errors: list[str]) -> datetime | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    try:
        return audit.parse_when(value)
    except ValueError:
        errors.append(gettext("%(value)r is not a date like 2026-01-31.", value=value))
        return None


def _before() -> int | None:
    value = request.args.get("before", "")
    return int(value) if value.isdigit() else None


def _details(entry: audit.AuditEntry) -> str:
    return json.dumps(entry.details, ensure_ascii=False, sort_keys=True) if entry.details else ""


@bp.get("/audit")
@login_required
def index() -> ResponseReturnValue:
    """Audit entries newest first, filtered; the chain's check when asked."""
    user = current_user()
    if user is None or user.role not in (Role.ADMIN, Role.AUDITOR):
        abort(404)
    errors: list[str] = []
    filters = {name: request.args.get(name, "").strip() for name in FILTERS}
    since, until = _day("since", errors), _day("until", errors)
    checking = request.args.get("verify") == "1"
    problems: list[audit.ChainProblem] = []
    with get_core().sessions() as session:
        if checking:
            audit.read_snapshot(session)
            problems = audit.verify(session)
        top = audit.head(session)
        rows = audit.entries(
            session,
            action=filters["action"] or None,
            actor=filters["actor"] or None,
            since=since,
            until=until,
            before=_before(),
            limit=PAGE_SIZE + 1,
        )
    shown = rows[:PAGE_SIZE]
    kept = {name: value for name, value in filters.items() if value}
    context: dict[str, Any] = {
        "title": gettext("Audit trail"),
        "filters": filters,
        "errors": errors,
        "entries": [(entry, _details(entry)) for entry in shown],
        "head": top,
        "checked": checking,
        "problems": problems[:PROBLEMS_SHOWN],
        "more_problems": max(0, len(problems) - PROBLEMS_SHOWN),
        "older": (
            url_for(".index", before=shown[-1].seq, **kept) if len(rows) > PAGE_SIZE else None
        ),
        "newest": url_for(".index", **kept) if _before() is not None else None,
    }
    return render_template("audit.html", **context), 400 if errors else 200
