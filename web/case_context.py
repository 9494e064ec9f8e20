"""Reading mail inside a case: which case a request is in, its links, and its audit names.

The case pages (`web.cases`) serve the same search, message, thread and download views as
the rest of the site, under `/cases/<name>/`. The request's viewer is then the case's scope
(`archiver.cases.scope.case_viewer`), so the one visibility rule limits what those views
find, exactly as it limits a person to their own mail. What differs is said here: links
stay inside the case (`in_case`), and every read is audited against the case, for
reviewers as for administrators (`case_read`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from flask import g, has_request_context

if TYPE_CHECKING:
    from archiver.cases.models import Case

CASE_KEY = "arsip_case"

# A read's action outside a case -> its action inside one, and the detail naming what
# was read (the case's name is the entry's target).
CASE_READS = {
    "search": ("case.search", "query"),
    "export": ("case.export", "query"),
    "message.view": ("case.view", "message_id"),
    "thread.view": ("case.view", "thread_id"),
    "attachment.preview": ("case.view", "message_id"),
    "message.raw": ("case.download", "message_id"),
    "message.download": ("case.download", "message_id"),
    "attachment.download": ("case.download", "message_id"),
}


def current_case() -> Case | None:
    """The case this request reads inside, if any."""
    if not has_request_context():
        return None
    return g.get(CASE_KEY)


def enter_case(case: Case) -> None:
    """Make this request one inside `case` (after its access was checked)."""
    setattr(g, CASE_KEY, case)


def case_path(case: Case) -> str:
    """The case's page, `/cases/<name>/`."""
    return f"/cases/{quote(case.name, safe='')}/"


def in_case(path: str) -> str:
    """`path` (a site path from `/`) inside the request's case, or as it is outside one."""
    case = current_case()
    if case is None:
        return path
    return case_path(case).removesuffix("/") + path


def case_read(action: str, target: str, details: dict[str, Any]) -> tuple[str, str, dict]:
    """A read's audit entry (action, target, details) inside the request's case: the case
    is the target, what was read a detail. Outside a case, the entry as given."""
    case = current_case()
    if case is None:
        return action, target, details
    name, key = CASE_READS.get(action, (f"case.{action}", "target"))
    return name, case.name, {key: target, "read": action, **details}
