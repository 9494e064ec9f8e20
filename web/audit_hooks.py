"""The web UI's calls into the audit trail, small enough to be one line in each view.

Reads are audited only for viewers who see everyone's mail (administrators and
auditors): that access is what the trail exists to account for (invariant 6). People
reading their own mail, or list archives they belong to, are not recorded; their access
follows from the mail itself, and logging it would bury the entries that matter. Inside a
case every read is recorded, whoever reads, against the case (`web.case_context`).

A read is recorded in its own short transaction after the fetch succeeded and before the
response leaves: if the entry cannot be written the request fails, so nothing an auditor
saw goes unrecorded. Changes are recorded in the caller's transaction, so the change and
its entry commit or roll back together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import request
from sqlalchemy.orm import Session

from archiver.audit import ANONYMOUS, record
from archiver.search.viewer import Viewer
from web.auth import current_user
from web.case_context import case_read, current_case
from web.deps import get_core

if TYPE_CHECKING:
    from archiver.core import Core


def web_actor() -> str:
    """The logged-in account's email, the actor of this request's actions."""
    user = current_user()
    return user.email if user is not None else ANONYMOUS


def client_ip() -> str:
    """The client's address as the web server saw it (behind a proxy: the proxy's, unless
    the deployment sets up ProxyFix)."""
    return request.remote_addr or "unknown"


def audit_read(
    viewer: Viewer,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
    actor: str | None = None,
) -> None:
    """Record that an all-seeing `viewer` read something, or that anyone read something
    inside a case; nothing for anyone else.

        `actor` defaults to the logged-in account; the API passes its token's account (and
        `via: api` in `details`).
    """
    if not viewer.sees_all and current_case() is None:
        return
    action, target, said = case_read(action, target, details or {})
    core: Core = get_core()
    full = {"via": "web", **said, "ip": client_ip()}
    with core.sessions.begin() as session:
        record(session, actor or web_actor(), action, target, full)


def audit_change(
    session: Session, action: str, target: str, details: dict[str, Any] | None = None
) -> None:
    """Record a change the logged-in account made, in the change's own transaction."""
    record(session, web_actor(), action, target, details)
